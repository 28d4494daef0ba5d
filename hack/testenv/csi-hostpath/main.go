// arca-csi-hostpath: the test environment's CSI driver (hack/testenv, `CSI=1`).
//
// A volume is a folder on the node, a snapshot a tar of that folder: enough for Kubernetes'
// own sidecars (external-provisioner, external-snapshotter) to provision claims, take
// VolumeSnapshots and provision claims from them, against the real kubelet of the test
// environment. It runs as a host process in the node's mount namespace (where kubelet and
// containerd run), so the bind mounts it makes for pods are the ones their containers get.
//
// It also serves kubelet's plugin registration API itself (registration.go), which is what
// node-driver-registrar does for other drivers: one process instead of two, and nothing to
// fetch that the Go module proxy does not serve.
//
// Its state is on disk only (--statedir, see state.go): a restarted driver carries on.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const (
	// driverName is the CSI driver's name: the CSIDriver object's, the StorageClass's
	// provisioner and the VolumeSnapshotClass's driver.
	driverName = "hostpath.csi.arca.dev"
	// topologyKey is the one topology segment: a volume lives on the node that holds its folder.
	topologyKey = "topology.hostpath.csi.arca.dev/node"
	// neverReadyParameter, set to "true" in a VolumeSnapshotClass's parameters, makes every
	// snapshot of that class stay not ready to use: the fault tests use it.
	neverReadyParameter = "arca.dev/test-never-ready"
)

// version is set at build time when wanted (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	endpoint := flag.String("endpoint", "", "the CSI socket: a path, or unix://<path>")
	nodeID := flag.String("nodeid", "", "the node's name, reported as its CSI node id and topology")
	stateDir := flag.String("statedir", "", "the folder that holds volumes and snapshots")
	registrationDir := flag.String("kubelet-registration-dir", "",
		"kubelet's plugin registration folder (<kubelet root>/plugins_registry); empty: do not register")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if *endpoint == "" || *nodeID == "" || *stateDir == "" {
		log.Fatal("--endpoint, --nodeid and --statedir are required")
	}
	if err := run(strings.TrimPrefix(*endpoint, "unix://"), *nodeID, *stateDir, *registrationDir); err != nil {
		log.Fatal(err)
	}
}

func run(socket, nodeID, stateDir, registrationDir string) error {
	state, err := openState(stateDir)
	if err != nil {
		return err
	}
	d := &driver{nodeID: nodeID, state: state}

	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiServer, d)
	csi.RegisterControllerServer(csiServer, d)
	csi.RegisterNodeServer(csiServer, d)
	csiListener, err := listen(socket)
	if err != nil {
		return err
	}
	servers := []*grpc.Server{csiServer}
	errs := make(chan error, 2)
	go func() { errs <- csiServer.Serve(csiListener) }()
	log.Printf("%s %s serving CSI on %s (node %s, state in %s)", driverName, version, socket, nodeID, stateDir)

	if registrationDir != "" {
		// Listening on the registration socket is what announces the driver: kubelet's plugin
		// watcher sees the socket appear, so the CSI socket is served first.
		regServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
		registerapi.RegisterRegistrationServer(regServer, registrar{endpoint: socket})
		regSocket := filepath.Join(registrationDir, driverName+"-reg.sock")
		regListener, err := listen(regSocket)
		if err != nil {
			return err
		}
		servers = append(servers, regServer)
		go func() { errs <- regServer.Serve(regListener) }()
		log.Printf("registering with kubelet through %s", regSocket)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-signals:
		log.Printf("%v: stopping", s)
	case err = <-errs:
	}
	// Stop closes the listeners, which removes their socket files.
	for _, s := range servers {
		s.Stop()
	}
	return err
}

// listen listens on a unix socket at path, replacing a stale socket a previous run left.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return net.Listen("unix", path)
}

// logCalls logs every call and its outcome: the log is how a failed test finds out why.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	if err != nil {
		log.Printf("%s %v: error: %v", method, req, err)
	} else if method != "Probe" && method != "NodeGetCapabilities" {
		log.Printf("%s %v: ok", method, req)
	}
	return resp, err
}

// driver implements CSI's three services: identity.go, controller.go and snapshots.go, node.go.
type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer
	nodeID string
	state  *state
}

// topology is where every volume of this driver is: this node.
func (d *driver) topology() *csi.Topology {
	return &csi.Topology{Segments: map[string]string{topologyKey: d.nodeID}}
}
