// Package codehealth holds checks on the repository's own source rather than
// on its behaviour: limits that keep the code readable the way the libraries
// idwire is modelled on (go-spiffe, grpc-go, connect-go) are, and that
// would otherwise erode one long function at a time.
package codehealth
