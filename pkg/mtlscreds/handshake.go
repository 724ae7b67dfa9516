package mtlscreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc/credentials"

	"github.com/idwire/idwire/pkg/identity"
)

var errNoALPN = errors.New("the peer did not negotiate h2 with ALPN, which gRPC over TLS requires")

// serverHandshake hands tls.Server the base config, whose
// GetConfigForClient returns the current snapshot's prebuilt config: no
// per-handshake building, and a reload takes effect at the next ClientHello.
func (st *state) serverHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := tls.Server(raw, st.base)
	if err := conn.Handshake(); err != nil {
		conn.Close()
		st.handshakeFailed(err, raw.RemoteAddr())
		return nil, nil, err
	}
	info, err := st.authInfo(conn.ConnectionState())
	if err != nil {
		conn.Close()
		st.handshakeFailed(err, raw.RemoteAddr())
		return nil, nil, err
	}
	if info.Identity == nil {
		// Only PERMISSIVE gets here: say so on every such connection.
		st.metrics.unauthenticated()
		st.log.Warn("mtlscreds: PERMISSIVE: accepted a connection without a client certificate; it has no identity",
			"remote", raw.RemoteAddr().String())
	}
	return wrapConn(raw, conn), info, nil
}

func (c *Credentials) clientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	st := c.state
	s := st.cur.Load()
	cfg := s.config.Clone()
	cfg.ServerName = c.serverName
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(authority)
		if err != nil {
			host = authority
		}
		cfg.ServerName = host
	}
	var chains [][]*x509.Certificate
	if st.opts.ServerIdentity != "" {
		// The name dialled is a proxy's: check who answers instead.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) (err error) {
			chains, err = st.verifyServer(s, cs, "")
			return err
		}
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		st.handshakeFailed(err, raw.RemoteAddr())
		return nil, nil, err
	}
	cs := conn.ConnectionState()
	if chains != nil {
		cs.VerifiedChains = chains
	}
	info, err := st.authInfo(cs)
	if err == nil && info.Identity == nil {
		err = reject(reasonNoCertificate, nil, errors.New("the server's certificate did not verify"))
	}
	if err != nil {
		conn.Close()
		st.handshakeFailed(err, raw.RemoteAddr())
		return nil, nil, err
	}
	return wrapConn(raw, conn), info, nil
}

// authInfo builds what gRPC attaches to the connection, parsing the
// identity of the verified leaf once.
func (st *state) authInfo(cs tls.ConnectionState) (identity.AuthInfo, error) {
	if cs.NegotiatedProtocol != "h2" {
		return identity.AuthInfo{}, reject(reasonALPN, nil, errNoALPN)
	}
	info := identity.AuthInfo{TLSInfo: credentials.TLSInfo{
		State:          cs,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}}
	if len(cs.VerifiedChains) == 0 {
		return info, nil
	}
	id, err := identity.FromConnectionState(cs)
	if err != nil {
		return identity.AuthInfo{}, reject(reasonBadIdentity, cs.VerifiedChains[0][0], err)
	}
	info.Identity = id
	if id.SPIFFEID() != "" {
		// The URI SAN x509 already parsed, as grpc-go's own TLSInfo has it.
		info.SPIFFEID = id.Certificate().URIs[0]
	}
	return info, nil
}

// wrapConn keeps the raw connection's syscall.Conn reachable through the TLS
// connection, as grpc-go's own TLS credentials do, for channelz socket
// options.
func wrapConn(raw net.Conn, conn *tls.Conn) net.Conn {
	if sc, ok := raw.(syscall.Conn); ok {
		return &syscallConn{Conn: conn, sys: sc}
	}
	return conn
}

type syscallConn struct {
	net.Conn
	sys syscall.Conn
}

func (c *syscallConn) SyscallConn() (syscall.RawConn, error) { return c.sys.SyscallConn() }
