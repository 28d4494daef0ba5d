//! End-to-end tests: a real kube-apiserver, etcd, controller-manager, scheduler, kwok
//! nodes and a real S3 server (see crates/testenv). One environment for the whole binary.

mod backup_filters;
mod backup_restore;
mod cli;
mod crd_validation;
mod faults;
mod hooks;
mod leader;
mod migration;
mod object_lock;
mod protected;
mod rbac;
mod restore_options;
mod schedules;
mod smoke;
mod tenants;
mod tls;
mod velero;
mod velero_modifiers;
mod velero_sync;
mod volumes;
