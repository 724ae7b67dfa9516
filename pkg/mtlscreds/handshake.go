package mtlscreds

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc/credentials"

	"github.com/idwire/idwire/pkg/identity"
)

var errNoALPN = errors.New("the peer did not negotiate h2 with ALPN, which gRPC over TLS requires")

// serverHandshake hands tls.Server a config whose GetConfigForClient
// returns the current snapshot's prebuilt config, so that a reload takes
// effect at the next ClientHello, cloned to keep this connection's verified
// peer.
func (st *state) serverHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var p verifiedPeer
	conn := tls.Server(raw, &tls.Config{
		MinVersion: st.opts.MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s := st.cur.Load()
			cfg := s.config.Clone()
			cfg.VerifyConnection = func(cs tls.ConnectionState) error { return st.checkClient(s, cs, &p) }
			return cfg, nil
		},
	})
	if err := conn.Handshake(); err != nil {
		conn.Close()
		return nil, nil, st.handshakeFailed(err, raw.RemoteAddr())
	}
	info, err := st.authInfo(conn.ConnectionState(), p)
	if err != nil {
		conn.Close()
		return nil, nil, st.handshakeFailed(err, raw.RemoteAddr())
	}
	if info.Identity == nil {
		st.acceptedUnauthenticated(raw.RemoteAddr())
	}
	return wrapConn(raw, conn), info, nil
}

// acceptedUnauthenticated counts a PERMISSIVE client without a certificate
// and says so loudly, but once per address per interval, so that a scanner
// opening connections in a loop does not flood the log.
func (st *state) acceptedUnauthenticated(remote net.Addr) {
	st.metrics.unauthenticated()
	if ok, suppressed := st.sample.Allow("permissive\x00" + remoteHost(remote)); ok {
		attrs := []any{"remote", remote.String()}
		if suppressed > 0 {
			attrs = append(attrs, "suppressed", suppressed)
		}
		st.log.Warn("mtlscreds: PERMISSIVE: accepted a connection without a client certificate; it has no identity", attrs...)
	}
}

func (c *Credentials) clientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	st := c.state
	s := st.cur.Load()
	cfg := s.config.Clone()
	cfg.ServerName = c.serverNameFor(authority)
	// verify checks the server, so that the chain's length is capped
	// before anything is verified and the check is the same as the
	// server's; crypto/tls's own check would come first.
	var p verifiedPeer
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) (err error) {
		p, err = st.verifyServer(s, cs, cfg.ServerName)
		return err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, st.handshakeFailed(err, raw.RemoteAddr())
	}
	info, err := st.authInfo(conn.ConnectionState(), p)
	if err == nil && info.Identity == nil {
		err = reject(ReasonNoCertificate, nil, errors.New("the server's certificate did not verify"))
	}
	if err != nil {
		conn.Close()
		return nil, nil, st.handshakeFailed(err, raw.RemoteAddr())
	}
	return wrapConn(raw, conn), info, nil
}

// serverNameFor is the name the server's certificate must have: the
// ServerName option (or OverrideServerName), else the host dialled.
func (c *Credentials) serverNameFor(authority string) string {
	if c.serverName != "" {
		return c.serverName
	}
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		return authority
	}
	return host
}

// authInfo builds what gRPC attaches to the connection from the peer that
// verify passed (none for a PERMISSIVE client without a certificate).
func (st *state) authInfo(cs tls.ConnectionState, p verifiedPeer) (identity.AuthInfo, error) {
	if cs.NegotiatedProtocol != "h2" {
		return identity.AuthInfo{}, reject(ReasonALPN, nil, errNoALPN)
	}
	// crypto/tls verified nothing itself: the chains are verify's.
	cs.VerifiedChains = p.chains
	info := identity.AuthInfo{TLSInfo: credentials.TLSInfo{
		State:          cs,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}}
	if p.id == nil {
		return info, nil
	}
	info.Identity = p.id
	if p.id.SPIFFEID() != "" {
		// The URI SAN x509 already parsed, as grpc-go's own TLSInfo has it.
		info.SPIFFEID = p.id.Certificate().URIs[0]
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
