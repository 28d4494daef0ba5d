package main

// CSI's controller service, volumes: a volume is a folder, statedir/volumes/<id>, filled
// from a snapshot's tar or copied from another volume when the claim asks for it.

import (
	"context"
	"os"
	"os/exec"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultCapacity is what a volume reports when the claim gives no size (claims always do).
const defaultCapacity = 1 << 30

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t},
		}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "the volume name is missing")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	if !d.reachable(req.GetAccessibilityRequirements()) {
		return nil, status.Errorf(codes.ResourceExhausted, "volumes are only made on node %s (%s), which the requirements do not allow", d.nodeID, topologyKey)
	}
	capacity := req.GetCapacityRange().GetRequiredBytes()
	if capacity == 0 {
		capacity = req.GetCapacityRange().GetLimitBytes()
	}
	if capacity == 0 {
		capacity = defaultCapacity
	}

	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	id := volumeID(req.GetName())
	rec, ok, err := d.state.volume(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if ok {
		// The same name again: the sidecar retried. The earlier volume is the answer if it fits.
		if rec.CapacityBytes < req.GetCapacityRange().GetRequiredBytes() {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with %d bytes, fewer than the %d asked for", req.GetName(), rec.CapacityBytes, req.GetCapacityRange().GetRequiredBytes())
		}
		return d.volumeResponse(id, rec.CapacityBytes, req.GetVolumeContentSource()), nil
	}

	// Anything there is from an attempt that did not finish: start again.
	dir := d.state.volumeDir(id)
	if err := removeAll(dir); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Mkdir(dir, 0o777); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	// Writable by any user, as an emptyDir is (the umask took some bits away).
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := d.fill(dir, req.GetVolumeContentSource()); err != nil {
		_ = removeAll(dir)
		return nil, err
	}
	if err := writeRecord(d.state.volumeRecord(id), volumeRecord{Name: req.GetName(), CapacityBytes: capacity}); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return d.volumeResponse(id, capacity, req.GetVolumeContentSource()), nil
}

func (d *driver) volumeResponse(id string, capacity int64, source *csi.VolumeContentSource) *csi.CreateVolumeResponse {
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:           id,
		CapacityBytes:      capacity,
		ContentSource:      source,
		AccessibleTopology: []*csi.Topology{d.topology()},
	}}
}

// fill puts a new volume's first content in dir: a snapshot's files, or another volume's.
func (d *driver) fill(dir string, source *csi.VolumeContentSource) error {
	switch {
	case source == nil:
		return nil
	case source.GetSnapshot() != nil:
		id := source.GetSnapshot().GetSnapshotId()
		rec, ok, err := d.state.snapshot(id)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if !ok {
			return status.Errorf(codes.NotFound, "no snapshot %s", id)
		}
		if !rec.ReadyToUse {
			return status.Errorf(codes.FailedPrecondition, "snapshot %s is not ready to use", id)
		}
		return command("tar", "--extract", "--file", d.state.snapshotTar(id), "--directory", dir,
			"--numeric-owner", "--same-permissions")
	case source.GetVolume() != nil:
		id := source.GetVolume().GetVolumeId()
		if _, ok, err := d.state.volume(id); err != nil {
			return status.Error(codes.Internal, err.Error())
		} else if !ok {
			return status.Errorf(codes.NotFound, "no volume %s", id)
		}
		return command("cp", "-a", d.state.volumeDir(id)+"/.", dir+"/")
	default:
		return status.Error(codes.InvalidArgument, "unknown content source")
	}
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "the volume id is missing")
	}
	if !validID.MatchString(id) {
		return &csi.DeleteVolumeResponse{}, nil // names nothing of ours: already gone
	}
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	// The record first: a volume half removed is one that does not exist.
	if err := removeAll(d.state.volumeRecord(id), d.state.volumeDir(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "the volume id is missing")
	}
	if _, ok, err := d.state.volume(req.GetVolumeId()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "no volume %s", req.GetVolumeId())
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		if status.Code(err) == codes.InvalidArgument && len(req.GetVolumeCapabilities()) > 0 {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
		}
		return nil, err
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// checkCapabilities accepts filesystem volumes in every access mode (there is one node, so
// every mode holds) and refuses raw block volumes: a folder is not a block device.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "the volume capabilities are missing")
	}
	for _, c := range caps {
		if c.GetBlock() != nil {
			return status.Error(codes.InvalidArgument, "raw block volumes are not supported: a volume is a folder")
		}
		if c.GetMount() == nil || c.GetAccessMode() == nil {
			return status.Error(codes.InvalidArgument, "a volume capability without an access type or mode")
		}
	}
	return nil
}

// reachable says whether this node meets the topology requirements (none: it does).
func (d *driver) reachable(req *csi.TopologyRequirement) bool {
	topologies := append(req.GetRequisite(), req.GetPreferred()...)
	if len(topologies) == 0 {
		return true
	}
	for _, t := range topologies {
		if t.GetSegments()[topologyKey] == d.nodeID {
			return true
		}
	}
	return false
}

// command runs a program; its output is the error's message when it fails.
func command(program string, args ...string) error {
	out, err := exec.Command(program, args...).CombinedOutput()
	if err != nil {
		return status.Errorf(codes.Internal, "%s %v: %v: %s", program, args, err, out)
	}
	return nil
}
