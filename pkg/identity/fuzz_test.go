package identity

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"sync"
	"testing"
)

// generalNames writes a SubjectAltName extension value from (tag, bytes)
// pairs: 1 email, 2 DNS, 6 URI, 7 IP.
func generalNames(names ...any) []byte {
	var seq []asn1.RawValue
	for i := 0; i+1 < len(names); i += 2 {
		seq = append(seq, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: names[i].(int), Bytes: []byte(names[i+1].(string))})
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		panic(err)
	}
	return der
}

var fuzzKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return k
})

// FuzzSANs feeds arbitrary subject alternative name extensions through
// crypto/x509 and FromCertificate. What the raw parser refuses gives no
// identity; an identity's SPIFFE ID must be valid and exactly the text x509
// parsed (so canonical: it prints back unchanged), and its DNS names lower
// case, distinct and capped.
func FuzzSANs(f *testing.F) {
	f.Add(generalNames(2, "order.internal"))
	f.Add(generalNames(2, "Order.Internal", 2, "order.internal", 6, "spiffe://example.org/order"))
	f.Add(generalNames(6, "SPIFFE://example.org/order"))
	f.Add(generalNames(6, "spiffe://example.org/order#"))
	f.Add(generalNames(6, "spiffe://example.org/order?"))
	f.Add(generalNames(6, "spiffe://example.org/a", 6, "spiffe://example.org/b"))
	f.Add(generalNames(7, "\x7f\x00\x00\x01", 1, "a@example.org", 6, "spiffe://td"))
	f.Add(generalNames(6, "spiffe://example.org/%6Frder"))
	f.Add(generalNames(6, "spiffe://"+strings.Repeat("a", 300)+"/x"))
	f.Add(generalNames(0, "\x06\x03\x2a\x03\x04\xa0\x00"))
	f.Add(generalNames())
	f.Add([]byte{0x30, 0x03, 0x86, 0x01})
	f.Add([]byte("not DER"))
	f.Fuzz(func(t *testing.T, san []byte) {
		uri, uris, n, sanErr := parseSANs(san)
		if sanErr == nil && (n < uris || n > MaxSANs+1 || (uris > 0) != (uri != nil)) {
			t.Fatalf("parseSANs: %d names, %d URIs, first %q", n, uris, uri)
		}
		k := fuzzKey()
		tmpl := &x509.Certificate{
			SerialNumber:    big.NewInt(1),
			Subject:         pkix.Name{CommonName: "fuzz"},
			ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Value: san}},
		}
		der, err := x509.CreateCertificate(nil, tmpl, tmpl, k.Public(), k)
		if err != nil {
			return
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return // x509 refuses it before FromCertificate could see it
		}
		if sanErr == nil && n <= MaxSANs && uris != len(cert.URIs) {
			t.Fatalf("SANs %x: parseSANs reads %d URIs, crypto/x509 %d", san, uris, len(cert.URIs))
		}
		id, err := FromCertificate(cert)
		if sanErr != nil && err == nil {
			// x509 is laxer (it ignores bytes after the SEQUENCE, say):
			// what parseSANs cannot read must not make an identity.
			t.Fatalf("SANs %x that parseSANs refuses (%v) gave identity %s", san, sanErr, id)
		}
		if err != nil {
			return
		}
		if sid := id.SPIFFEID(); sid != "" {
			if err := ValidateSPIFFEID(sid); err != nil {
				t.Fatalf("identity has an invalid SPIFFE ID: %v", err)
			}
			if len(cert.URIs) != 1 || cert.URIs[0].String() != sid {
				t.Fatalf("SPIFFE ID %q is not what x509 parsed (%v): not canonical", sid, cert.URIs)
			}
		} else if len(cert.URIs) != 0 {
			t.Fatalf("x509 parsed URIs %v, identity has no SPIFFE ID", cert.URIs)
		}
		names := id.DNSNames()
		if len(names) > MaxSANs {
			t.Fatalf("%d DNS names", len(names))
		}
		seen := map[string]bool{}
		for _, d := range names {
			if d != strings.ToLower(d) || seen[d] {
				t.Fatalf("DNS names %q: not lower case, or repeated", names)
			}
			seen[d] = true
		}
	})
}
