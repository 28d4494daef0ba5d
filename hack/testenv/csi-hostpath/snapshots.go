package main

// CSI's controller service, snapshots: a snapshot is a tar of the volume's folder,
// statedir/snapshots/<id>.tar, made at once (ready to use) unless the snapshot class asks for
// the test fault (neverReadyParameter): then it is recorded as not ready, and stays so.

import (
	"context"
	"os"
	"strconv"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "the snapshot name is missing")
	}
	source := req.GetSourceVolumeId()
	if source == "" {
		return nil, status.Error(codes.InvalidArgument, "the source volume id is missing")
	}
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	id := snapshotID(req.GetName())
	rec, ok, err := d.state.snapshot(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if ok {
		// The same name again: the sidecar retried, or (not ready) asks again. Same answer.
		if rec.SourceVolumeID != source {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists, of volume %s", req.GetName(), rec.SourceVolumeID)
		}
		return &csi.CreateSnapshotResponse{Snapshot: snapshotOf(id, rec)}, nil
	}
	if _, ok, err := d.state.volume(source); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if !ok {
		return nil, status.Errorf(codes.NotFound, "no volume %s", source)
	}

	rec = snapshotRecord{Name: req.GetName(), SourceVolumeID: source, CreatedUnixNano: time.Now().UnixNano()}
	if req.GetParameters()[neverReadyParameter] != "true" {
		// The tar is written aside and renamed: a snapshot that is there is whole.
		tmp := d.state.snapshotTar(id) + ".tmp"
		if err := command("tar", "--create", "--file", tmp, "--directory", d.state.volumeDir(source),
			"--numeric-owner", "--sparse", "."); err != nil {
			_ = removeAll(tmp)
			return nil, err
		}
		info, err := os.Stat(tmp)
		if err == nil {
			err = os.Rename(tmp, d.state.snapshotTar(id))
		}
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		rec.SizeBytes, rec.ReadyToUse = info.Size(), true
	}
	if err := writeRecord(d.state.snapshotRecord(id), rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: snapshotOf(id, rec)}, nil
}

func snapshotOf(id string, rec snapshotRecord) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     id,
		SourceVolumeId: rec.SourceVolumeID,
		CreationTime:   timestamppb.New(time.Unix(0, rec.CreatedUnixNano)),
		SizeBytes:      rec.SizeBytes,
		ReadyToUse:     rec.ReadyToUse,
	}
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "the snapshot id is missing")
	}
	if !validID.MatchString(id) {
		return &csi.DeleteSnapshotResponse{}, nil // names nothing of ours: already gone
	}
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	if err := removeAll(d.state.snapshotRecord(id), d.state.snapshotTar(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots answers csi-snapshotter's readiness checks (by snapshot id, for contents made
// from an existing snapshot handle) and general listings (by source volume, or all), in
// pages whose token is the index of the next entry.
func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	ids := []string{req.GetSnapshotId()}
	if req.GetSnapshotId() == "" {
		var err error
		if ids, err = d.state.snapshotIDs(); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	var entries []*csi.ListSnapshotsResponse_Entry
	for _, id := range ids {
		rec, ok, err := d.state.snapshot(id)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if !ok || (req.GetSourceVolumeId() != "" && rec.SourceVolumeID != req.GetSourceVolumeId()) {
			continue
		}
		entries = append(entries, &csi.ListSnapshotsResponse_Entry{Snapshot: snapshotOf(id, rec)})
	}

	start := 0
	if token := req.GetStartingToken(); token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(entries) {
			return nil, status.Errorf(codes.Aborted, "invalid starting token %q", token)
		}
		start = n
	}
	end, next := len(entries), ""
	if max := int(req.GetMaxEntries()); max > 0 && start+max < end {
		end, next = start+max, strconv.Itoa(start+max)
	}
	return &csi.ListSnapshotsResponse{Entries: entries[start:end], NextToken: next}, nil
}
