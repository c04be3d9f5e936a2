package awssim

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// serveControl answers the test-facing API under /_sim/:
//
//	GET    /_sim/calls            the call log, JSON
//	DELETE /_sim/calls            clear the call log
//	PUT    /_sim/faults/{svc.Op}  install a fault (JSON body: simapi.Fault)
//	DELETE /_sim/faults/{svc.Op}  remove it
//	POST   /_sim/scenario         apply a scenario document (YAML or JSON)
//	GET    /_sim/health           200 once serving
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path[len("/_sim/"):]
	switch {
	case path == "health":
		w.WriteHeader(http.StatusOK)
	case path == "calls" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Calls())
	case path == "calls" && r.Method == http.MethodDelete:
		s.mu.Lock()
		s.calls = nil
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case len(path) > len("faults/") && path[:len("faults/")] == "faults/":
		s.controlFault(w, r, path[len("faults/"):])
	case path == "scenario" && r.Method == http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.ApplyScenario(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "awssim: unknown control endpoint "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

func (s *Server) controlFault(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodDelete:
		s.SetFault(key, nil)
	case http.MethodPut, http.MethodPost:
		var f simapi.Fault
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFault(key, &f)
	default:
		http.Error(w, "use PUT or DELETE", http.StatusMethodNotAllowed)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
