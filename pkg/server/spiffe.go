package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/idwire/idwire/pkg/mtlscreds"
)

// SVIDWait bounds how long a service started with --spiffe-socket waits for
// its first X509-SVID: an agent that is still starting, or a registration
// entry that has not reached the agent yet, takes seconds.
const SVIDWait = time.Minute

// workloadSource is the Workload API source a service shares between its
// server credentials and every connection Runtime.Dial makes.
type workloadSource struct{ *mtlscreds.WorkloadAPISource }

// orNil gives the mtlscreds.Source, or a nil interface without a source (a
// typed nil would read as a source).
func (w *workloadSource) orNil() mtlscreds.Source {
	if w == nil {
		return nil
	}
	return w.WorkloadAPISource
}

// openSource connects to the Workload API when cfg says so; nil with files.
func openSource(cfg Config, logger *slog.Logger) (*workloadSource, error) {
	if cfg.SPIFFESocket == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), SVIDWait)
	defer cancel()
	src, err := mtlscreds.NewWorkloadAPISource(ctx, mtlscreds.WorkloadAPIOptions{Addr: cfg.SPIFFESocket, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--spiffe-socket %s: %w", cfg.SPIFFESocket, err)
	}
	return &workloadSource{src}, nil
}

// credentialsFlags names where the credentials come from, for errors.
func credentialsFlags(cfg Config) string {
	if cfg.SPIFFESocket != "" {
		return "--spiffe-socket " + cfg.SPIFFESocket
	}
	return fmt.Sprintf("--cert %s, --key %s, --ca %s", cfg.CertFile, cfg.KeyFile, cfg.CAFile)
}
