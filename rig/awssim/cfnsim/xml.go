package cfnsim

import (
	"encoding/xml"
	"time"
)

// response is <XxxResponse><XxxResult>…</XxxResult><ResponseMetadata>; the
// result type names its own element, and a nil Result leaves it out.
type response struct {
	XMLName xml.Name
	Xmlns   string           `xml:"xmlns,attr"`
	Result  any              `xml:",omitempty"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

func xmlName(local string) xml.Name { return xml.Name{Local: local} }

// timestamp is the ISO 8601 form, to the millisecond, AWS answers with.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

type createStackResult struct {
	XMLName xml.Name `xml:"CreateStackResult"`
	StackID string   `xml:"StackId"`
}

type describeStacksResult struct {
	XMLName xml.Name   `xml:"DescribeStacksResult"`
	Stacks  []xmlStack `xml:"Stacks>member"`
}

type xmlParameter struct {
	ParameterKey   string
	ParameterValue string
}

type xmlDrift struct {
	StackDriftStatus string
}

type xmlStack struct {
	StackID                     string         `xml:"StackId"`
	StackName                   string         `xml:"StackName"`
	Description                 string         `xml:"Description,omitempty"`
	Parameters                  []xmlParameter `xml:"Parameters>member"`
	CreationTime                string         `xml:"CreationTime"`
	DeletionTime                string         `xml:"DeletionTime,omitempty"`
	LastUpdatedTime             string         `xml:"LastUpdatedTime,omitempty"`
	StackStatus                 string         `xml:"StackStatus"`
	StackStatusReason           string         `xml:"StackStatusReason,omitempty"`
	DisableRollback             bool           `xml:"DisableRollback"`
	EnableTerminationProtection bool           `xml:"EnableTerminationProtection"`
	DriftInformation            xmlDrift       `xml:"DriftInformation"`
}

func toXMLStack(st *stack) xmlStack {
	x := xmlStack{
		StackID:           st.ID,
		StackName:         st.Name,
		Description:       st.Description,
		CreationTime:      timestamp(st.Created),
		StackStatus:       st.Status,
		StackStatusReason: st.Reason,
		DisableRollback:   st.OnFailure == onFailureDoNothing,
		DriftInformation:  xmlDrift{StackDriftStatus: "NOT_CHECKED"},
	}
	for _, p := range st.Parameters {
		x.Parameters = append(x.Parameters, xmlParameter{p.Key, p.Value})
	}
	if st.deleted() {
		x.DeletionTime = timestamp(st.Deleted)
	}
	return x
}

type describeStackEventsResult struct {
	XMLName     xml.Name   `xml:"DescribeStackEventsResult"`
	StackEvents []xmlEvent `xml:"StackEvents>member"`
	NextToken   string     `xml:"NextToken,omitempty"`
}

type xmlEvent struct {
	StackID              string `xml:"StackId"`
	EventID              string `xml:"EventId"`
	StackName            string `xml:"StackName"`
	LogicalResourceID    string `xml:"LogicalResourceId"`
	PhysicalResourceID   string `xml:"PhysicalResourceId"`
	ResourceType         string `xml:"ResourceType"`
	Timestamp            string `xml:"Timestamp"`
	ResourceStatus       string `xml:"ResourceStatus"`
	ResourceStatusReason string `xml:"ResourceStatusReason,omitempty"`
}

func toXMLEvent(st *stack, e event) xmlEvent {
	return xmlEvent{
		StackID:              st.ID,
		EventID:              e.ID,
		StackName:            st.Name,
		LogicalResourceID:    e.LogicalID,
		PhysicalResourceID:   e.PhysicalID,
		ResourceType:         e.Type,
		Timestamp:            timestamp(e.Time),
		ResourceStatus:       e.Status,
		ResourceStatusReason: e.Reason,
	}
}

type describeStackResourceResult struct {
	XMLName xml.Name          `xml:"DescribeStackResourceResult"`
	Detail  xmlResourceDetail `xml:"StackResourceDetail"`
}

type xmlResourceDrift struct {
	StackResourceDriftStatus string
}

type xmlResourceDetail struct {
	StackName            string           `xml:"StackName"`
	StackID              string           `xml:"StackId"`
	LogicalResourceID    string           `xml:"LogicalResourceId"`
	PhysicalResourceID   string           `xml:"PhysicalResourceId,omitempty"`
	ResourceType         string           `xml:"ResourceType"`
	LastUpdatedTimestamp string           `xml:"LastUpdatedTimestamp"`
	ResourceStatus       string           `xml:"ResourceStatus"`
	ResourceStatusReason string           `xml:"ResourceStatusReason,omitempty"`
	DriftInformation     xmlResourceDrift `xml:"DriftInformation"`
}

func toXMLResourceDetail(st *stack, r *resource) xmlResourceDetail {
	return xmlResourceDetail{
		StackName:            st.Name,
		StackID:              st.ID,
		LogicalResourceID:    r.LogicalID,
		PhysicalResourceID:   r.PhysicalID,
		ResourceType:         r.Type,
		LastUpdatedTimestamp: timestamp(r.Updated),
		ResourceStatus:       r.Status,
		ResourceStatusReason: r.Reason,
		DriftInformation:     xmlResourceDrift{StackResourceDriftStatus: "NOT_CHECKED"},
	}
}

type describeStackResourcesResult struct {
	XMLName   xml.Name      `xml:"DescribeStackResourcesResult"`
	Resources []xmlResource `xml:"StackResources>member"`
}

type xmlResource struct {
	StackName            string           `xml:"StackName"`
	StackID              string           `xml:"StackId"`
	LogicalResourceID    string           `xml:"LogicalResourceId"`
	PhysicalResourceID   string           `xml:"PhysicalResourceId,omitempty"`
	ResourceType         string           `xml:"ResourceType"`
	Timestamp            string           `xml:"Timestamp"`
	ResourceStatus       string           `xml:"ResourceStatus"`
	ResourceStatusReason string           `xml:"ResourceStatusReason,omitempty"`
	DriftInformation     xmlResourceDrift `xml:"DriftInformation"`
}

func toXMLResource(st *stack, r *resource) xmlResource {
	return xmlResource{
		StackName:            st.Name,
		StackID:              st.ID,
		LogicalResourceID:    r.LogicalID,
		PhysicalResourceID:   r.PhysicalID,
		ResourceType:         r.Type,
		Timestamp:            timestamp(r.Updated),
		ResourceStatus:       r.Status,
		ResourceStatusReason: r.Reason,
		DriftInformation:     xmlResourceDrift{StackResourceDriftStatus: "NOT_CHECKED"},
	}
}
