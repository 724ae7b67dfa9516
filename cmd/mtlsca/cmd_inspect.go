package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

// certInfo is what inspect prints, and its --json form.
type certInfo struct {
	File        string    `json:"file"`
	Index       int       `json:"index"` // position in the file, 0 = leaf
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	SPIFFEID    string    `json:"spiffe_id,omitempty"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	URIs        []string  `json:"uris,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	KeyType     string    `json:"key_type"`
	IsCA        bool      `json:"is_ca"`
	KeyUsage    []string  `json:"key_usage,omitempty"`
	ExtKeyUsage []string  `json:"ext_key_usage,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	SecondsLeft int64     `json:"seconds_left"` // negative once expired
	Expired     bool      `json:"expired"`
	SHA256      string    `json:"sha256"`
}

func describe(file string, i int, c *x509.Certificate, now time.Time) certInfo {
	info := certInfo{
		File: file, Index: i, Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		Serial: ca.FormatSerial(c.SerialNumber), DNSNames: c.DNSNames, IsCA: c.IsCA,
		KeyUsage: keyUsages(c.KeyUsage), ExtKeyUsage: extKeyUsages(c.ExtKeyUsage),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		SecondsLeft: int64(c.NotAfter.Sub(now) / time.Second), Expired: !now.Before(c.NotAfter),
		SHA256: ca.Fingerprint(c),
	}
	for _, u := range c.URIs {
		info.URIs = append(info.URIs, u.String())
		if u.Scheme == "spiffe" && info.SPIFFEID == "" {
			info.SPIFFEID = u.String()
		}
	}
	for _, ip := range c.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	if kt, err := ca.KeyTypeOf(c.PublicKey); err == nil {
		info.KeyType = string(kt)
	} else {
		info.KeyType = fmt.Sprintf("%s (%v)", c.PublicKeyAlgorithm, err)
	}
	return info
}

func runInspect(e *env, c *command, args []string) int {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "print JSON (a list, one object per certificate in the file)")
	files, code, ok := e.parse(c, fs, args, 1, -1)
	if !ok {
		return code
	}
	now := e.now()
	var all []certInfo
	for _, f := range files {
		certs, err := pemfile.ReadCerts(f)
		if err != nil {
			fmt.Fprintf(e.stderr, "mtlsca inspect: %v\n", err)
			return exitFailed
		}
		for i, cert := range certs {
			all = append(all, describe(f, i, cert, now))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			return e.fail(c, err)
		}
		return exitOK
	}
	for i, info := range all {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		printInfo(e.stdout, info)
	}
	return exitOK
}

func printInfo(w io.Writer, i certInfo) {
	role := "leaf"
	if i.IsCA {
		role = "CA"
	}
	fmt.Fprintf(w, "%s, certificate %d (%s)\n", printable(i.File), i.Index+1, role)
	// Every name in a certificate is chosen by whoever made it: printed
	// raw, an escape sequence in a CN or a SAN would drive the terminal
	// (retitle it, clear it, hide text). JSON escapes them itself.
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-12s %s\n", k+":", printable(v))
		}
	}
	row("Subject", i.Subject)
	row("SPIFFE ID", i.SPIFFEID)
	row("DNS names", strings.Join(i.DNSNames, ", "))
	if len(i.URIs) > 1 || (len(i.URIs) == 1 && i.SPIFFEID == "") {
		row("URIs", strings.Join(i.URIs, ", "))
	}
	row("IPs", strings.Join(i.IPAddresses, ", "))
	row("Serial", i.Serial)
	row("Issuer", i.Issuer)
	row("Key type", i.KeyType)
	row("Key usage", strings.Join(i.KeyUsage, ", "))
	row("Ext usage", strings.Join(i.ExtKeyUsage, ", "))
	row("Valid", i.NotBefore.Format(time.RFC3339)+" to "+i.NotAfter.Format(time.RFC3339))
	left := time.Duration(i.SecondsLeft) * time.Second
	if i.Expired {
		row("Time left", "EXPIRED "+formatDuration(left)+" ago")
	} else {
		row("Time left", formatDuration(left))
	}
	row("SHA-256", i.SHA256)
}

func keyUsages(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func extKeyUsages(ekus []x509.ExtKeyUsage) []string {
	var out []string
	for _, u := range ekus {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		case x509.ExtKeyUsageAny:
			out = append(out, "any")
		default:
			out = append(out, fmt.Sprintf("eku(%d)", u))
		}
	}
	return out
}

// printable escapes what a terminal would act on rather than show: control
// characters, invisible format characters (bidirectional overrides, zero
// widths) and bytes that are not UTF-8, as Go escapes (\x1b, \u202e).
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		case r < utf8.RuneSelf:
			fmt.Fprintf(&b, "\\x%02x", r)
		case r <= 0xffff:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
		i += size
	}
	return b.String()
}
