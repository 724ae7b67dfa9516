package mtlscreds

import (
	"crypto/x509"
	"fmt"
	"strings"
)

// What a root may vouch for. Go's verifier makes any root of the bundle good
// for any name: a partner's root in ca.crt could issue
// spiffe://our-domain/admin, and a CA whose name constraints confine it to
// team-a.example could still issue the common name "admin", since Go checks
// constraints against SANs only. bindChains closes both, as go-spiffe's
// x509svid.Verify does for SPIFFE IDs:
//
//   - A SPIFFE ID must chain to a root of its own trust domain. A root's
//     trust domain is its own SPIFFE URI SAN (spiffe://TD, as mtlsca and
//     SPIRE write it), else Options.TrustDomain. A bundle in which no root
//     has one (a single CA from cert-manager or Vault, without URI SANs)
//     binds nothing, as before; once any root has one, a root without one
//     vouches for no SPIFFE ID.
//   - A common name is honoured only when every CA of the chain with name
//     constraints permits it as a DNS name: a constrained CA vouches for
//     the names it is constrained to, in the CN as in the SANs.

// rootTrustDomains maps each root that has a trust domain (by its DER) to
// it, or returns nil when none has. given, from a Source with bundles per
// trust domain, comes first; then the root's own URI SAN; then configured.
func rootTrustDomains(roots []*x509.Certificate, configured string, given map[string]string) map[string]string {
	var out map[string]string
	for _, r := range roots {
		td := given[string(r.Raw)]
		if td == "" {
			td = rootTrustDomain(r)
		}
		if td == "" {
			td = configured
		}
		if td == "" {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(roots))
		}
		out[string(r.Raw)] = td
	}
	return out
}

// rootTrustDomain is the trust domain a CA certificate names in a SPIFFE
// URI SAN, or "".
func rootTrustDomain(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" && u.Host != "" {
			return u.Host
		}
	}
	return ""
}

// bindChains keeps the chains whose root may vouch for the leaf's SPIFFE ID
// and whose CAs' name constraints permit its common name, or refuses the
// leaf when none is left. The leaf's identity has been parsed: it has at
// most one URI SAN, a valid SPIFFE ID.
func (v *verifier) bindChains(chains [][]*x509.Certificate) ([][]*x509.Certificate, error) {
	leaf := chains[0][0]
	td := ""
	if len(leaf.URIs) == 1 {
		td = leaf.URIs[0].Host
	}
	// The usual case is one chain that passes: no copy.
	var firstErr error
	var kept [][]*x509.Certificate
	for i, chain := range chains {
		err := v.bindChain(chain, td)
		switch {
		case err != nil && firstErr == nil:
			firstErr = err
			kept = append(kept[:0:0], chains[:i]...)
		case err == nil && firstErr != nil:
			kept = append(kept, chain)
		}
	}
	switch {
	case firstErr == nil:
		return chains, nil
	case len(kept) == 0:
		return nil, firstErr
	}
	return kept, nil
}

func (v *verifier) bindChain(chain []*x509.Certificate, td string) error {
	leaf, root := chain[0], chain[len(chain)-1]
	if td != "" && v.trustDomains != nil {
		switch got, ok := v.trustDomains[string(root.Raw)]; {
		case !ok:
			return reject(ReasonTrustDomain, leaf, fmt.Errorf("has a SPIFFE ID of trust domain %q but chains to the root %s, which names no trust domain "+
				"(give it a URI SAN spiffe://TRUST-DOMAIN, or set Options.TrustDomain)", td, describe(root)))
		case got != td:
			return reject(ReasonTrustDomain, leaf, fmt.Errorf("has a SPIFFE ID of trust domain %q but chains to the root %s of trust domain %q", td, describe(root), got))
		}
	}
	if cn := leaf.Subject.CommonName; cn != "" {
		for _, ca := range chain[1:] {
			if err := cnPermitted(cn, ca); err != nil {
				return reject(ReasonNameConstraints, leaf, fmt.Errorf("has the common name %q, which %s: a constrained CA vouches only for the names it is constrained to", cn, err))
			}
		}
	}
	return nil
}

// cnPermitted tells whether a CA's name constraints permit cn, taken as the
// DNS name it usually repeats. A CA without constraints permits anything;
// one that permits only URI, IP or email subtrees permits no common name.
func cnPermitted(cn string, ca *x509.Certificate) error {
	if len(ca.PermittedDNSDomains)+len(ca.ExcludedDNSDomains)+len(ca.PermittedURIDomains)+len(ca.ExcludedURIDomains)+
		len(ca.PermittedIPRanges)+len(ca.ExcludedIPRanges)+len(ca.PermittedEmailAddresses)+len(ca.ExcludedEmailAddresses) == 0 {
		return nil
	}
	if !isDNSName(cn) {
		return fmt.Errorf("is no DNS name, under the name constraints of %s", describe(ca))
	}
	for _, c := range ca.ExcludedDNSDomains {
		if matchDomain(cn, c) {
			return fmt.Errorf("the name constraints of %s exclude (%q)", describe(ca), c)
		}
	}
	if len(ca.PermittedDNSDomains) == 0 {
		if len(ca.PermittedURIDomains)+len(ca.PermittedIPRanges)+len(ca.PermittedEmailAddresses) > 0 {
			return fmt.Errorf("the name constraints of %s do not permit: they permit no DNS name", describe(ca))
		}
		return nil
	}
	for _, c := range ca.PermittedDNSDomains {
		if matchDomain(cn, c) {
			return nil
		}
	}
	return fmt.Errorf("the name constraints of %s do not permit (permitted: %s)", describe(ca), strings.Join(ca.PermittedDNSDomains, ", "))
}

// matchDomain is Go's (and RFC 5280's) DNS constraint match: "example.com"
// matches itself and its subdomains, ".example.com" only its subdomains,
// "" everything; case does not matter.
func matchDomain(name, constraint string) bool {
	if constraint == "" {
		return true
	}
	if len(name) < len(constraint) || !strings.EqualFold(name[len(name)-len(constraint):], constraint) {
		return false
	}
	rest := name[:len(name)-len(constraint)]
	return constraint[0] == '.' || rest == "" || strings.HasSuffix(rest, ".")
}

// isDNSName accepts what may stand in a dNSName: dot-separated labels of
// letters, digits, '-' and '_' (no wildcard: a CN is one name).
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
