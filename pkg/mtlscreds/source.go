package mtlscreds

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/idwire/idwire/internal/pemfile"
)

// Source supplies the certificate, its key and the trust bundles from
// somewhere other than files, and says when they change: the SPIFFE
// Workload API (WorkloadAPISource), or anything else that hands out
// credentials in memory. Set Options.Source instead of CertFile, KeyFile and
// CAFile; one Source may serve a process's server and client credentials
// at once.
//
// What a Source returns is validated exactly like a set of files (the key
// matches, the chain verifies against the bundles for our own extended key
// usage, the leaf is not a CA) before it is used, and a bad set is logged,
// counted and skipped: the last good one stays.
type Source interface {
	// Material returns the current set, or an error when there is none
	// yet. The caller does not modify it.
	Material() (*Material, error)
	// Subscribe arranges for changed to be called, from any goroutine,
	// each time Material may return something new, until cancel is
	// called. changed must not block for long.
	Subscribe(changed func()) (cancel func())
	// String names the source in logs and errors
	// ("SPIFFE Workload API unix:///run/spire/agent.sock").
	String() string
}

// Material is one set of credentials from a Source.
type Material struct {
	// Chain is the certificate chain: the leaf first, then intermediates.
	Chain []*x509.Certificate
	// Key is the leaf's private key.
	Key crypto.Signer
	// Bundles are the trust bundles by trust domain name ("example.org"):
	// the roots peers' chains may verify against, the own trust domain's
	// and federated ones alike. A root vouches only for SPIFFE IDs of the
	// trust domain it is listed under, whatever URI SAN it has.
	Bundles map[string][]*x509.Certificate
}

// MarshalPEM returns m as the three files it stands for: the chain
// (tls.crt), the key as PKCS #8 (tls.key) and the roots of every trust
// domain (ca.crt), in trust domain order so that the same material always
// gives the same bytes.
func (m *Material) MarshalPEM() (chain, key, bundles []byte, err error) {
	if chain, key, bundles, err = m.marshalPEM(); err != nil {
		return nil, nil, nil, fmt.Errorf("mtlscreds: %w", err)
	}
	return chain, key, bundles, nil
}

// marshalPEM is MarshalPEM for fileSet, whose errors the credentials
// prefix.
func (m *Material) marshalPEM() (chain, key, bundles []byte, err error) {
	if m == nil || len(m.Chain) == 0 {
		return nil, nil, nil, errors.New("no certificate")
	}
	if m.Key == nil {
		return nil, nil, nil, errors.New("no private key")
	}
	if key, err = pemfile.EncodeKey(m.Key); err != nil {
		return nil, nil, nil, fmt.Errorf("private key: %w", err)
	}
	tds := make([]string, 0, len(m.Bundles))
	for td := range m.Bundles {
		tds = append(tds, td)
	}
	slices.Sort(tds)
	var roots []*x509.Certificate
	for _, td := range tds {
		roots = append(roots, m.Bundles[td]...)
	}
	return pemfile.EncodeCerts(m.Chain...), key, pemfile.EncodeCerts(roots...), nil
}

// fileSet turns m into the bytes of the files it stands for, so that it is
// parsed and validated by the same code as files, and an update that
// changes nothing is recognised as unchanged.
func (m *Material) fileSet() (fileSet, error) {
	var fs fileSet
	var err error
	if fs.cert, fs.key, fs.ca, err = m.marshalPEM(); err != nil {
		return fs, err
	}
	// Each root vouches for the trust domain whose bundle it came in, as
	// go-spiffe's x509svid.Verify has it, whatever URI SAN it carries or
	// lacks (an upstream CA's root has none).
	fs.caTrustDomains = make(map[string]string)
	for td, roots := range m.Bundles {
		for _, r := range roots {
			fs.caTrustDomains[string(r.Raw)] = td
		}
	}
	return fs, nil
}

// readSource is readFiles for credentials from a Source: the material
// rendered as files, and the CRL file when there is one.
func (st *state) readSource() (fileSet, error) {
	src := st.opts.Source
	m, err := src.Material()
	if err != nil {
		return fileSet{}, fmt.Errorf("%s: %w", src, err)
	}
	fs, err := m.fileSet()
	if err != nil {
		return fileSet{}, fmt.Errorf("%s: %w", src, err)
	}
	if p := st.opts.CRLFile; p != "" {
		if fs.crl, err = os.ReadFile(p); err != nil {
			return fileSet{}, fmt.Errorf("CRL file: %w", err)
		}
	}
	return fs, nil
}

// checkSource checks the options of credentials from a Source: the files
// it replaces must not be set as well. It then names the parts of the
// material after the source, for the errors of load.
func checkSource(opts *Options) error {
	if opts.CertFile != "" || opts.KeyFile != "" || opts.CAFile != "" {
		return fmt.Errorf("Options.Source (%s) replaces CertFile, KeyFile and CAFile: set one or the other", opts.Source)
	}
	opts.CertFile = "X509-SVID from " + opts.Source.String()
	opts.KeyFile = "private key from " + opts.Source.String()
	opts.CAFile = "trust bundles from " + opts.Source.String()
	return nil
}

// watchSource reloads whenever the source says its material changed. It
// returns no file to watch: the source's updates replace the watch.
func (st *state) watchSource() []string {
	st.unsubscribe = st.opts.Source.Subscribe(func() { _ = st.reload(triggerSource) })
	return nil
}

func (st *state) stopSource() {
	if st.unsubscribe != nil {
		st.unsubscribe()
	}
}
