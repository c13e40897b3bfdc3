package middleware

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// LoadPublicKeys reads the public keys of PEM files (REALTIME_JWT_PUBLIC_KEYS):
// each file holds one or more PUBLIC KEY (PKIX), RSA PUBLIC KEY (PKCS #1)
// or CERTIFICATE blocks. A private key is refused: the service only
// verifies.
func LoadPublicKeys(paths []string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("public key file: %w", err)
		}
		ks, err := ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("public key file %s: %w", p, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// ParsePublicKeys parses the PEM blocks of b into the public keys a
// Verifier accepts.
func ParsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var (
			k   any
			err error
		)
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("holds a private key: give the public key only (openssl pkey -pubout)")
		default:
			return nil, fmt.Errorf("pem block %q is not a public key or certificate", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("pem block %q: %w", blk.Type, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key in it")
	}
	return keys, nil
}
