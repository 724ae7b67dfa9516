package main

import (
	"crypto/x509"
	"fmt"
	"os"

	"github.com/idwire/idwire/internal/pemfile"
)

// readCertFile reads every certificate of a PEM file; errors name the file.
func readCertFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemfile.ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return certs, nil
}
