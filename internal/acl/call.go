package acl

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Call invokes r's method on conn with an empty request, without the
// method's generated code (an empty message is valid for any request type),
// and returns the status code. A stream is read to its end.
//
// Authorization runs before the handler, so the code tells whether the
// caller was let through: see Admitted.
func Call(ctx context.Context, conn grpc.ClientConnInterface, r Rule) codes.Code {
	req, resp := &emptypb.Empty{}, &emptypb.Empty{}
	if !r.ClientStreams && !r.ServerStreams {
		return status.Code(conn.Invoke(ctx, r.Method, req, resp))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: r.ClientStreams, ServerStreams: r.ServerStreams}, r.Method)
	if err != nil {
		return status.Code(err)
	}
	if err := s.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	if err := s.CloseSend(); err != nil {
		return status.Code(err)
	}
	for {
		if err := s.RecvMsg(resp); errors.Is(err, io.EOF) {
			return codes.OK
		} else if err != nil {
			return status.Code(err)
		}
	}
}

// Admitted reports whether a call that ended with code got past
// authorization: any answer but PERMISSION_DENIED, UNAUTHENTICATED or
// UNAVAILABLE (a refused handshake) came from the handler, which may well
// reject an empty request.
func Admitted(code codes.Code) bool {
	return code != codes.PermissionDenied && code != codes.Unauthenticated && code != codes.Unavailable
}
