package main

// Kubelet's plugin registration API, served on <kubelet root>/plugins_registry/<driver>-reg.sock.
// Kubelet's plugin watcher finds the socket, asks GetInfo, then calls the driver's
// NodeGetInfo on the CSI socket named there, records the driver in the node's CSINode object
// and reports back with NotifyRegistrationStatus. This is all node-driver-registrar does.

import (
	"context"
	"log"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type registrar struct {
	registerapi.UnimplementedRegistrationServer
	// endpoint is the CSI socket's path, which kubelet dials.
	endpoint string
}

func (r registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              driverName,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r registrar) NotifyRegistrationStatus(_ context.Context, status *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if status.PluginRegistered {
		log.Printf("kubelet registered the driver")
	} else {
		log.Printf("kubelet refused the driver: %s", status.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
