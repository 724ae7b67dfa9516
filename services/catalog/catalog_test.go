package catalog

import (
	"strings"
	"testing"
)

func TestEntriesAreConsistent(t *testing.T) {
	if err := Check(Entries); err != nil {
		t.Fatal(err)
	}
	ports := map[int]string{}
	for _, e := range Entries {
		if other, ok := ports[e.Port]; ok {
			t.Errorf("%s and %s share port %d", e.Name, other, e.Port)
		}
		ports[e.Port] = e.Name
		if len(e.Services()) == 0 {
			t.Errorf("%s serves no gRPC service", e.Name)
		}
		if got := e.New(map[string]string{}).Name; got != e.Name {
			t.Errorf("entry %s builds a service named %q", e.Name, got)
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"calls a later service", []Entry{{Name: "a", Calls: []string{"b"}}, {Name: "b"}}, `"a" calls "b"`},
		{"twice", []Entry{{Name: "a"}, {Name: "a"}}, `"a" is listed twice`},
		{"a caller's name", []Entry{{Name: "admin"}}, `"admin" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.entries)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want an error containing %s", err, tt.want)
			}
		})
	}
}
