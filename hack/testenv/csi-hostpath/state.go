package main

// The driver's state, on disk only, under --statedir (so a restarted driver carries on):
//
//	volumes/<id>/        a volume's data: the folder pods get bind-mounted
//	volumes/<id>.json    its record (volumeRecord), written last: a volume without one was
//	                     never finished and is made again
//	snapshots/<id>.tar   a snapshot's data: a tar of the volume's folder
//	snapshots/<id>.json  its record (snapshotRecord), written last too
//
// Ids are derived from the names the sidecars give (a hash), so a repeated CreateVolume or
// CreateSnapshot with the same name finds the earlier result: idempotent without an index.
// One lock serialises every change: the sidecars retry and may call at once.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

type volumeRecord struct {
	Name          string `json:"name"`
	CapacityBytes int64  `json:"capacityBytes"`
}

type snapshotRecord struct {
	Name            string `json:"name"`
	SourceVolumeID  string `json:"sourceVolumeId"`
	CreatedUnixNano int64  `json:"createdUnixNano"`
	SizeBytes       int64  `json:"sizeBytes"`
	ReadyToUse      bool   `json:"readyToUse"`
}

type state struct {
	mu  sync.Mutex
	dir string
}

func openState(dir string) (*state, error) {
	for _, sub := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	return &state{dir: dir}, nil
}

// An id is a prefix and 20 hex digits: anything else (a path, "..") names nothing here.
var validID = regexp.MustCompile(`^(vol|snap)-[0-9a-f]{20}$`)

func idFor(prefix, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + "-" + hex.EncodeToString(sum[:])[:20]
}

func volumeID(name string) string   { return idFor("vol", name) }
func snapshotID(name string) string { return idFor("snap", name) }

func (s *state) volumeDir(id string) string    { return filepath.Join(s.dir, "volumes", id) }
func (s *state) volumeRecord(id string) string { return filepath.Join(s.dir, "volumes", id+".json") }
func (s *state) snapshotTar(id string) string  { return filepath.Join(s.dir, "snapshots", id+".tar") }
func (s *state) snapshotRecord(id string) string {
	return filepath.Join(s.dir, "snapshots", id+".json")
}

// volume reads a finished volume's record; ok is false when there is none.
func (s *state) volume(id string) (rec volumeRecord, ok bool, err error) {
	ok, err = readRecord(strings.HasPrefix(id, "vol-"), id, s.volumeRecord(id), &rec)
	return rec, ok, err
}

// snapshot reads a snapshot's record; ok is false when there is none.
func (s *state) snapshot(id string) (rec snapshotRecord, ok bool, err error) {
	ok, err = readRecord(strings.HasPrefix(id, "snap-"), id, s.snapshotRecord(id), &rec)
	return rec, ok, err
}

// snapshotIDs lists every snapshot's id, sorted (ListSnapshots pages through them).
func (s *state) snapshotIDs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "snapshots"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && validID.MatchString(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func readRecord(kindOK bool, id, path string, into any) (bool, error) {
	if !kindOK || !validID.MatchString(id) {
		return false, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, into); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

// writeRecord writes a record whole or not at all (a temporary file renamed over it).
func writeRecord(path string, rec any) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removeAll removes paths; those already gone are fine (deletes are idempotent).
func removeAll(paths ...string) error {
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}
