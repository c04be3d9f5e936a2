package cfnsim

import (
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Stack and resource statuses, as CloudFormation names them.
const (
	createInProgress   = "CREATE_IN_PROGRESS"
	createComplete     = "CREATE_COMPLETE"
	createFailed       = "CREATE_FAILED"
	rollbackInProgress = "ROLLBACK_IN_PROGRESS"
	rollbackComplete   = "ROLLBACK_COMPLETE"
	deleteInProgress   = "DELETE_IN_PROGRESS"
	deleteComplete     = "DELETE_COMPLETE"
)

// OnFailure values.
const (
	onFailureRollback  = "ROLLBACK"
	onFailureDoNothing = "DO_NOTHING"
	onFailureDelete    = "DELETE"
)

const stackType = "AWS::CloudFormation::Stack"

const reasonCancelled = "Resource creation cancelled"

// stack is one stack with its resources and event history. The JSON form is
// what the simulator persists.
type stack struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Status      string      `json:"status"`
	Reason      string      `json:"reason,omitempty"`
	OnFailure   string      `json:"on_failure"`
	Parameters  []parameter `json:"parameters,omitempty"`
	Created     time.Time   `json:"created"`
	Updated     time.Time   `json:"updated,omitzero"`
	Deleted     time.Time   `json:"deleted,omitzero"`
	Resources   []*resource `json:"resources"`
	Events      []event     `json:"events"` // oldest first
}

type parameter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type resource struct {
	LogicalID  string    `json:"logical_id"`
	Type       string    `json:"type"`
	PhysicalID string    `json:"physical_id"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	Updated    time.Time `json:"updated"`
	// SignalCount is CreationPolicy.ResourceSignal.Count; 0 means the
	// resource has no creation policy and cannot be signalled.
	SignalCount int       `json:"signal_count,omitempty"`
	Deadline    time.Time `json:"deadline,omitzero"`
	Signals     []string  `json:"signals,omitempty"` // UniqueIds that sent SUCCESS
}

type event struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	LogicalID  string    `json:"logical_id"`
	PhysicalID string    `json:"physical_id"`
	Type       string    `json:"type"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
}

func (st *stack) deleted() bool { return !st.Deleted.IsZero() }

func (st *stack) resource(logicalID string) *resource {
	for _, r := range st.Resources {
		if r.LogicalID == logicalID {
			return r
		}
	}
	return nil
}

// waiting reports whether r is still waiting for signals.
func (r *resource) waiting() bool { return r.SignalCount > 0 && r.Status == createInProgress }

func (st *stack) setStatus(now time.Time, status, reason string) {
	st.Status, st.Reason, st.Updated = status, reason, now
	st.Events = append(st.Events, event{
		ID: newUUID(), Time: now, LogicalID: st.Name, PhysicalID: st.ID,
		Type: stackType, Status: status, Reason: reason,
	})
}

func (st *stack) setResource(now time.Time, r *resource, status, reason string) {
	r.Status, r.Reason, r.Updated = status, reason, now
	st.logResource(now, r, status, reason)
}

// logResource records an event without changing the resource, as AWS does
// for a signal that does not yet complete it.
func (st *stack) logResource(now time.Time, r *resource, status, reason string) {
	st.Events = append(st.Events, event{
		ID: newUUID(), Time: now, LogicalID: r.LogicalID, PhysicalID: r.PhysicalID,
		Type: r.Type, Status: status, Reason: reason,
	})
}

// addSignal records a SUCCESS from uniqueID and reports whether the
// resource now has all it waits for. A UniqueId counts once.
func (r *resource) addSignal(uniqueID string) bool {
	for _, id := range r.Signals {
		if id == uniqueID {
			return len(r.Signals) >= r.SignalCount
		}
	}
	r.Signals = append(r.Signals, uniqueID)
	return len(r.Signals) >= r.SignalCount
}

// completeIfDone moves the stack to CREATE_COMPLETE once every resource is.
func (st *stack) completeIfDone(now time.Time) {
	if st.Status != createInProgress {
		return
	}
	for _, r := range st.Resources {
		if r.Status != createComplete {
			return
		}
	}
	st.setStatus(now, createComplete, "")
}

// fail fails the stack after r failed with reason: other resources still
// waiting are cancelled, then the stack rolls back, stays failed or is
// deleted, as OnFailure asks.
func (st *stack) fail(now time.Time, r *resource, reason string) {
	st.setResource(now, r, createFailed, reason)
	for _, o := range st.Resources {
		if o.Status == createInProgress {
			st.setResource(now, o, createFailed, reasonCancelled)
		}
	}
	var failed []string
	for _, o := range st.Resources {
		if o.Status == createFailed {
			failed = append(failed, o.LogicalID)
		}
	}
	sort.Strings(failed)
	cause := fmt.Sprintf("The following resource(s) failed to create: [%s].", strings.Join(failed, ", "))
	switch st.OnFailure {
	case onFailureDoNothing:
		st.setStatus(now, createFailed, cause)
	case onFailureDelete:
		st.setStatus(now, deleteInProgress, cause+" Delete requested by user.")
		st.deleteResources(now)
		st.setStatus(now, deleteComplete, "")
		st.Deleted = now
	default:
		cause += " Rollback requested by user."
		st.setStatus(now, rollbackInProgress, cause)
		st.deleteResources(now)
		st.setStatus(now, rollbackComplete, "")
		// Keep the cause in DescribeStacks, so that whoever looks at a
		// rolled-back stack sees why without reading its events.
		st.Reason = cause
	}
}

// deleteResources deletes what exists, newest first.
func (st *stack) deleteResources(now time.Time) {
	for i := len(st.Resources) - 1; i >= 0; i-- {
		r := st.Resources[i]
		if r.Status == deleteComplete {
			continue
		}
		if r.Status == createInProgress {
			st.setResource(now, r, createFailed, reasonCancelled)
		}
		st.setResource(now, r, deleteInProgress, "")
		st.setResource(now, r, deleteComplete, "")
	}
}

// physicalID makes an id shaped like the ones AWS gives resources of typ.
func physicalID(stackName, logicalID, typ string) string {
	switch typ {
	case "AWS::EC2::Instance":
		return "i-" + randomHex(17)
	case "AWS::EC2::Volume":
		return "vol-" + randomHex(17)
	case "AWS::EC2::SecurityGroup":
		return "sg-" + randomHex(17)
	}
	return stackName + "-" + logicalID + "-" + strings.ToUpper(randomHex(12))
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return fmt.Sprintf("%x", b)[:n]
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
