package ec2sim

import (
	"encoding/xml"
	"log"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Volume size limits per type, GiB.
var sizeLimits = map[string][2]int32{
	"gp2":      {1, 16384},
	"gp3":      {1, 16384},
	"io1":      {4, 16384},
	"io2":      {4, 65536},
	"st1":      {125, 16384},
	"sc1":      {125, 16384},
	"standard": {1, 1024},
}

func badValue(format string, args ...any) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "InvalidParameterValue", format, args...)
}

func internalError(err error) *simapi.APIError {
	log.Printf("awssim ec2: %v", err)
	return simapi.Errorf(http.StatusInternalServerError, "InternalError", "An internal error has occurred")
}

func dryRun(form url.Values) *simapi.APIError {
	if form.Get("DryRun") == "true" {
		return simapi.Errorf(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	return nil
}

func malformedVolume(id string) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", id)
}

func volumeNotFound(id string) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
}

func incorrectState(v *volume) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "IncorrectState", "Volume '%s' is in the '%s' state.", v.ID, v.State)
}

// volumeParam reads a required, well-formed volume id.
func volumeParam(form url.Values) (string, *simapi.APIError) {
	id := form.Get("VolumeId")
	if id == "" {
		return "", simapi.MissingParameter("VolumeId")
	}
	if !volumeIDRe.MatchString(id) {
		return "", malformedVolume(id)
	}
	return id, nil
}

func instanceParam(form url.Values, required bool) (string, *simapi.APIError) {
	id := form.Get("InstanceId")
	if id == "" {
		if required {
			return "", simapi.MissingParameter("InstanceId")
		}
		return "", nil
	}
	if !instanceIDRe.MatchString(id) {
		return "", simapi.Errorf(http.StatusBadRequest, "InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
	}
	return id, nil
}

func boolParam(form url.Values, name string) (bool, *simapi.APIError) {
	switch v := form.Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, badValue("Value (%s) for parameter %s is invalid. Expected: 'true' or 'false'.", v, name)
	}
}

func intParam(form url.Values, name string) (int32, bool, *simapi.APIError) {
	v := form.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false, badValue("Value (%s) for parameter %s is invalid. Expected: integer.", v, name)
	}
	return int32(n), true, nil
}

// listParam reads the flattened list prefix.1, prefix.2, ... in order.
func listParam(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func (s *Service) createVolume(form url.Values) (any, *simapi.APIError) {
	v, aerr := s.parseCreate(form)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := dryRun(form); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.ClientToken != "" {
		// The SDK sends a client token and reuses it when it retries: the
		// retry gets the volume the first try made.
		for _, old := range s.volumes {
			if old.ClientToken == v.ClientToken {
				return createVolumeResponse{RequestID: simapi.RequestID(), xmlVolume: s.toXML(old)}, nil
			}
		}
	}
	id, err := newVolumeID()
	if err != nil {
		return nil, internalError(err)
	}
	v.ID = id
	if err := s.makeBacking(id, v.SizeGiB); err != nil {
		return nil, internalError(err)
	}
	v.State = stateAvailable
	if s.createDelay > 0 {
		v.State = stateCreating
		s.schedule(id, s.createDelay, s.finishCreate)
	}
	s.volumes[id] = v
	if err := s.save(); err != nil {
		return nil, internalError(err)
	}
	out := s.toXML(v)
	out.Status = stateCreating // EC2 always answers "creating"
	return createVolumeResponse{RequestID: simapi.RequestID(), xmlVolume: out}, nil
}

func (s *Service) parseCreate(form url.Values) (*volume, *simapi.APIError) {
	v := &volume{
		Type:        form.Get("VolumeType"),
		AZ:          form.Get("AvailabilityZone"),
		KMSKeyID:    form.Get("KmsKeyId"),
		ClientToken: form.Get("ClientToken"),
		CreateTime:  time.Now().UTC(),
		Links:       []string{linkByID},
	}
	if v.Type == "" {
		v.Type = "gp2"
	}
	limits, ok := sizeLimits[v.Type]
	if !ok {
		return nil, badValue("Value (%s) for parameter volumeType is invalid. Valid volume types are %s.", v.Type, strings.Join(slices.Sorted(maps.Keys(sizeLimits)), ", "))
	}
	if form.Get("SnapshotId") != "" {
		return nil, simapi.Errorf(http.StatusBadRequest, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", form.Get("SnapshotId"))
	}
	size, ok, aerr := intParam(form, "Size")
	if aerr != nil {
		return nil, aerr
	}
	if !ok {
		return nil, simapi.MissingParameter("size/snapshot")
	}
	if size < limits[0] || size > limits[1] {
		return nil, badValue("Volume of %dGiB is outside the range %d-%dGiB for volume type %s.", size, limits[0], limits[1], v.Type)
	}
	v.SizeGiB = size
	if v.AZ == "" {
		return nil, simapi.MissingParameter("AvailabilityZone")
	}
	if !s.validAZ(v.AZ) {
		return nil, badValue("Invalid availability zone: [%s]", v.AZ)
	}
	if aerr := s.parseIops(form, v); aerr != nil {
		return nil, aerr
	}
	if v.Encrypted, aerr = boolParam(form, "Encrypted"); aerr != nil {
		return nil, aerr
	}
	if v.KMSKeyID != "" && !v.Encrypted {
		return nil, simapi.Errorf(http.StatusBadRequest, "InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	if v.Encrypted {
		v.KMSKeyID = s.keyARN(v.KMSKeyID)
	}
	tags, aerr := parseTagSpecs(form)
	if aerr != nil {
		return nil, aerr
	}
	v.Tags = tags
	return v, nil
}

func (s *Service) parseIops(form url.Values, v *volume) *simapi.APIError {
	iops, haveIops, aerr := intParam(form, "Iops")
	if aerr != nil {
		return aerr
	}
	tput, haveTput, aerr := intParam(form, "Throughput")
	if aerr != nil {
		return aerr
	}
	if (v.Type == "io1" || v.Type == "io2") && !haveIops {
		return simapi.MissingParameter("iops")
	}
	defaultPerf(v)
	if haveIops {
		v.Iops = iops
	}
	if haveTput && v.Type == "gp3" {
		v.Throughput = tput
	}
	return nil
}

// defaultPerf sets the IOPS and throughput EC2 reports for a volume of v's
// type and size when none were asked for.
func defaultPerf(v *volume) {
	switch v.Type {
	case "gp3":
		v.Iops, v.Throughput = 3000, 125
	case "gp2":
		v.Iops = min(max(100, 3*v.SizeGiB), 16000)
	case "io1", "io2":
		v.Iops = 100
	}
}

// validAZ accepts the region's zones: the region name and one letter.
func (s *Service) validAZ(az string) bool {
	rest, ok := strings.CutPrefix(az, s.id.Region)
	return ok && len(rest) == 1 && rest[0] >= 'a' && rest[0] <= 'z'
}

// keyARN turns a key id or alias into the ARN EC2 reports; empty is the
// account's default EBS key.
func (s *Service) keyARN(key string) string {
	prefix := "arn:aws:kms:" + s.id.Region + ":" + s.id.AccountID + ":"
	switch {
	case key == "":
		return prefix + "key/5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	case strings.HasPrefix(key, "arn:"):
		return key
	case strings.HasPrefix(key, "alias/"):
		return prefix + key
	default:
		return prefix + "key/" + key
	}
}

// parseTagSpecs reads TagSpecification.N.ResourceType and .Tag.M.Key/Value.
func parseTagSpecs(form url.Values) ([]tag, *simapi.APIError) {
	var tags []tag
	for i := 1; ; i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		rt, ok := form[p+".ResourceType"]
		if !ok {
			return tags, nil
		}
		if rt[0] != "volume" {
			return nil, badValue("'%s' is not a valid taggable resource type for this operation.", rt[0])
		}
		for j := 1; ; j++ {
			tp := p + ".Tag." + strconv.Itoa(j)
			k, ok := form[tp+".Key"]
			if !ok {
				break
			}
			if k[0] == "" || strings.HasPrefix(strings.ToLower(k[0]), "aws:") {
				return nil, badValue("Tag key '%s' is invalid.", k[0])
			}
			tags = append(tags, tag{Key: k[0], Value: form.Get(tp + ".Value")})
		}
	}
}

func (s *Service) describeVolumes(form url.Values) (any, *simapi.APIError) {
	ids := listParam(form, "VolumeId")
	for _, id := range ids {
		if !volumeIDRe.MatchString(id) {
			return nil, malformedVolume(id)
		}
	}
	filters, aerr := parseFilters(form)
	if aerr != nil {
		return nil, aerr
	}
	maxResults, paged, aerr := intParam(form, "MaxResults")
	if aerr != nil {
		return nil, aerr
	}
	if paged && len(ids) > 0 {
		return nil, simapi.Errorf(http.StatusBadRequest, "InvalidParameterCombination", "The parameter volumeSet cannot be used with the parameter maxResults")
	}
	if paged && maxResults < 5 {
		return nil, badValue("Value ( %d ) for parameter maxResults is invalid. Expecting a value greater than 5.", maxResults)
	}
	// Above 500 EC2 returns 500 a page; the CLI asks for 1000.
	maxResults = min(maxResults, 500)
	if aerr := dryRun(form); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var vols []*volume
	if len(ids) > 0 {
		for _, id := range ids {
			v := s.volumes[id]
			if v == nil {
				return nil, volumeNotFound(id)
			}
			vols = append(vols, v)
		}
	} else {
		vols = s.sortedVolumes()
	}
	resp := describeVolumesResponse{RequestID: simapi.RequestID()}
	token := form.Get("NextToken")
	for _, v := range vols {
		if token != "" && v.ID <= token || !matchAll(filters, v) {
			continue
		}
		if paged && len(resp.Volumes.Items) == int(maxResults) {
			resp.NextToken = resp.Volumes.Items[len(resp.Volumes.Items)-1].VolumeID
			break
		}
		resp.Volumes.Items = append(resp.Volumes.Items, s.toXML(v))
	}
	return resp, nil
}

func (s *Service) attachVolume(form url.Values) (any, *simapi.APIError) {
	vid, aerr := volumeParam(form)
	if aerr != nil {
		return nil, aerr
	}
	iid, aerr := instanceParam(form, true)
	if aerr != nil {
		return nil, aerr
	}
	dev := form.Get("Device")
	if dev == "" {
		return nil, simapi.MissingParameter("Device")
	}
	if !deviceRe.MatchString(dev) {
		return nil, badValue("Value (%s) for parameter device is invalid. %s is not a valid EBS device name.", dev, dev)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[vid]
	if v == nil {
		return nil, volumeNotFound(vid)
	}
	if aerr := s.checkAttach(v, iid, dev); aerr != nil {
		return nil, aerr
	}
	if aerr := dryRun(form); aerr != nil {
		return nil, aerr
	}
	v.State = stateInUse
	v.Attachment = &attachment{InstanceID: iid, Device: dev, State: attAttaching, AttachTime: time.Now().UTC()}
	s.schedule(vid, s.attachDelay, s.finishAttach)
	if err := s.save(); err != nil {
		return nil, internalError(err)
	}
	return attachmentResponse{XMLName: xml.Name{Space: xmlns, Local: "AttachVolumeResponse"}, RequestID: simapi.RequestID(), xmlAttachment: attachmentXML(v)}, nil
}

// checkAttach says why v cannot be attached to instance iid at dev, in the
// order EC2 finds out. Callers hold s.mu.
func (s *Service) checkAttach(v *volume, iid, dev string) *simapi.APIError {
	if !s.instanceExists(iid) {
		return simapi.Errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", iid)
	}
	if v.Attachment != nil {
		return simapi.Errorf(http.StatusBadRequest, "VolumeInUse", "%s is already attached to an instance", v.ID)
	}
	if v.State != stateAvailable {
		return incorrectState(v)
	}
	if s.instanceAZOf(iid, v) != v.AZ {
		return simapi.Errorf(http.StatusBadRequest, "InvalidVolume.ZoneMismatch",
			"The volume '%s' is not in the same availability zone as instance '%s'", v.ID, iid)
	}
	for _, o := range s.volumes {
		if a := o.Attachment; a != nil && a.InstanceID == iid && a.Device == dev {
			return badValue("Invalid value '%s' for unixDevice. Attachment point %s is already in use", dev, dev)
		}
	}
	if v.KMSRevoked && iid == s.id.InstanceID {
		return simapi.Errorf(http.StatusBadRequest, "VolumeInUse",
			"Client.CustomerKeyHasBeenRevoked: Volume %s is encrypted with KMS key %s, which is not accessible.", v.ID, v.KMSKeyID)
	}
	return nil
}

func (s *Service) detachVolume(form url.Values) (any, *simapi.APIError) {
	vid, aerr := volumeParam(form)
	if aerr != nil {
		return nil, aerr
	}
	iid, aerr := instanceParam(form, false)
	if aerr != nil {
		return nil, aerr
	}
	if _, aerr := boolParam(form, "Force"); aerr != nil {
		return nil, aerr
	}
	dev := form.Get("Device")
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[vid]
	if v == nil {
		return nil, volumeNotFound(vid)
	}
	a := v.Attachment
	if a == nil {
		return nil, incorrectState(v)
	}
	if (iid != "" && iid != a.InstanceID) || (dev != "" && dev != a.Device) {
		return nil, simapi.Errorf(http.StatusBadRequest, "InvalidAttachment.NotFound",
			"Attachment point %s for volume %s on instance %s not found", orDefault(dev, a.Device), vid, orDefault(iid, a.InstanceID))
	}
	if aerr := dryRun(form); aerr != nil {
		return nil, aerr
	}
	if a.State != attDetaching {
		a.State = attDetaching
		v.ReleaseAt = time.Time{}
		s.schedule(vid, s.attachDelay, s.finishDetach)
		if err := s.save(); err != nil {
			return nil, internalError(err)
		}
	}
	return attachmentResponse{XMLName: xml.Name{Space: xmlns, Local: "DetachVolumeResponse"}, RequestID: simapi.RequestID(), xmlAttachment: attachmentXML(v)}, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Service) deleteVolume(form url.Values) (any, *simapi.APIError) {
	vid, aerr := volumeParam(form)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[vid]
	if v == nil {
		return nil, volumeNotFound(vid)
	}
	if v.Attachment != nil {
		return nil, simapi.Errorf(http.StatusBadRequest, "VolumeInUse", "Volume %s is currently attached to %s", vid, v.Attachment.InstanceID)
	}
	if v.State != stateAvailable && v.State != stateError {
		return nil, incorrectState(v)
	}
	if aerr := dryRun(form); aerr != nil {
		return nil, aerr
	}
	s.cancel(vid)
	if err := s.releaseDevice(v, vid); err != nil {
		return nil, internalError(err)
	}
	delete(s.volumes, vid)
	if err := os.Remove(s.volumeFile(vid)); err != nil && !os.IsNotExist(err) {
		log.Printf("awssim ec2: delete %s: %v", vid, err)
	}
	if err := s.save(); err != nil {
		return nil, internalError(err)
	}
	return deleteVolumeResponse{RequestID: simapi.RequestID(), Return: true}, nil
}

// filter is one Filter.N: a name and values, any of which may match; values
// take EC2's wildcards * and ?.
type filter struct {
	name   string
	values []*regexp.Regexp
}

var filterNames = []string{
	"attachment.attach-time", "attachment.delete-on-termination", "attachment.device",
	"attachment.instance-id", "attachment.status", "availability-zone", "create-time",
	"encrypted", "size", "status", "tag-key", "volume-id", "volume-type",
}

func parseFilters(form url.Values) ([]filter, *simapi.APIError) {
	var out []filter
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		name, ok := form[p+".Name"]
		if !ok {
			return out, nil
		}
		if !slices.Contains(filterNames, name[0]) && !strings.HasPrefix(name[0], "tag:") {
			return nil, badValue("The filter '%s' is invalid", name[0])
		}
		f := filter{name: name[0]}
		for _, v := range listParam(form, p+".Value") {
			f.values = append(f.values, wildcard(v))
		}
		out = append(out, f)
	}
}

func wildcard(v string) *regexp.Regexp {
	q := regexp.QuoteMeta(v)
	q = strings.ReplaceAll(q, `\*`, ".*")
	q = strings.ReplaceAll(q, `\?`, ".")
	return regexp.MustCompile("^" + q + "$")
}

func matchAll(filters []filter, v *volume) bool {
	for _, f := range filters {
		if !f.match(v) {
			return false
		}
	}
	return true
}

func (f filter) match(v *volume) bool {
	for _, field := range fieldValues(f.name, v) {
		for _, re := range f.values {
			if re.MatchString(field) {
				return true
			}
		}
	}
	return false
}

// fieldValues is what a filter name compares against; none for an
// attachment filter on an unattached volume.
func fieldValues(name string, v *volume) []string {
	if key, ok := strings.CutPrefix(name, "tag:"); ok {
		var out []string
		for _, t := range v.Tags {
			if t.Key == key {
				out = append(out, t.Value)
			}
		}
		return out
	}
	a := v.Attachment
	switch name {
	case "availability-zone":
		return []string{v.AZ}
	case "create-time":
		return []string{ec2Time(v.CreateTime)}
	case "encrypted":
		return []string{strconv.FormatBool(v.Encrypted)}
	case "size":
		return []string{strconv.Itoa(int(v.SizeGiB))}
	case "status":
		return []string{v.State}
	case "volume-id":
		return []string{v.ID}
	case "volume-type":
		return []string{v.Type}
	case "tag-key":
		var out []string
		for _, t := range v.Tags {
			out = append(out, t.Key)
		}
		return out
	}
	if a == nil {
		return nil
	}
	switch name {
	case "attachment.attach-time":
		return []string{ec2Time(a.AttachTime)}
	case "attachment.delete-on-termination":
		return []string{strconv.FormatBool(a.DeleteOnTermination)}
	case "attachment.device":
		return []string{a.Device}
	case "attachment.instance-id":
		return []string{a.InstanceID}
	case "attachment.status":
		return []string{a.State}
	}
	return nil
}

func ec2Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// XML shapes, element for element as EC2 writes them.

type xmlVolume struct {
	VolumeID         string `xml:"volumeId"`
	Size             int32  `xml:"size"`
	SnapshotID       string `xml:"snapshotId"`
	AvailabilityZone string `xml:"availabilityZone"`
	Status           string `xml:"status"`
	CreateTime       string `xml:"createTime"`
	AttachmentSet    *struct {
		Items []xmlAttachment `xml:"item"`
	} `xml:"attachmentSet,omitempty"`
	Tags               []xmlTag `xml:"tagSet>item,omitempty"`
	VolumeType         string   `xml:"volumeType"`
	Iops               int32    `xml:"iops,omitempty"`
	Encrypted          bool     `xml:"encrypted"`
	KMSKeyID           string   `xml:"kmsKeyId,omitempty"`
	MultiAttachEnabled bool     `xml:"multiAttachEnabled"`
	Throughput         int32    `xml:"throughput,omitempty"`
}

type xmlAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type createVolumeResponse struct {
	XMLName   xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ CreateVolumeResponse"`
	RequestID string   `xml:"requestId"`
	xmlVolume
}

type describeVolumesResponse struct {
	XMLName   xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeVolumesResponse"`
	RequestID string   `xml:"requestId"`
	Volumes   struct {
		Items []xmlVolume `xml:"item"`
	} `xml:"volumeSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type attachmentResponse struct {
	XMLName   xml.Name
	RequestID string `xml:"requestId"`
	xmlAttachment
}

type deleteVolumeResponse struct {
	XMLName   xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DeleteVolumeResponse"`
	RequestID string   `xml:"requestId"`
	Return    bool     `xml:"return"`
}

func (s *Service) toXML(v *volume) xmlVolume {
	out := xmlVolume{
		VolumeID:         v.ID,
		Size:             v.SizeGiB,
		AvailabilityZone: v.AZ,
		Status:           v.State,
		CreateTime:       ec2Time(v.CreateTime),
		AttachmentSet: &struct {
			Items []xmlAttachment `xml:"item"`
		}{},
		VolumeType: v.Type,
		Iops:       v.Iops,
		Encrypted:  v.Encrypted,
		KMSKeyID:   v.KMSKeyID,
		Throughput: v.Throughput,
	}
	if v.Attachment != nil {
		out.AttachmentSet.Items = []xmlAttachment{attachmentXML(v)}
	}
	for _, t := range v.Tags {
		out.Tags = append(out.Tags, xmlTag(t))
	}
	return out
}

func attachmentXML(v *volume) xmlAttachment {
	a := v.Attachment
	return xmlAttachment{
		VolumeID:            v.ID,
		InstanceID:          a.InstanceID,
		Device:              a.Device,
		Status:              a.State,
		AttachTime:          ec2Time(a.AttachTime),
		DeleteOnTermination: a.DeleteOnTermination,
	}
}
