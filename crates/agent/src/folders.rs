//! Where kubelet keeps a pod's volumes: `<host-pods-dir>/<pod uid>/volumes/<plugin>/<name>`,
//! `<name>` being the volume's name, or the PersistentVolume's for a claim; a CSI volume's
//! files are in its `mount` subfolder.

use std::path::{Path, PathBuf};

/// Why a volume's folder was not found.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "pod {uid} has no volumes folder under {host_pods_dir}: is the pod on this node, and is --host-pods-dir kubelet's pods folder (/var/lib/kubelet/pods)?"
    )]
    NoPod { uid: String, host_pods_dir: String },
    #[error("no folder {name} under {volumes}: the volume is not mounted (yet)")]
    NoVolume { name: String, volumes: String },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The folder holding the files of volume folder `name` of pod `uid`.
pub fn volume_folder(host_pods_dir: &Path, uid: &str, name: &str) -> Result<PathBuf, FolderError> {
    if uid.is_empty() || uid.contains(['/', '.']) || name.is_empty() || name.contains('/') {
        return Err(FolderError::NoVolume {
            name: name.into(),
            volumes: host_pods_dir.display().to_string(),
        });
    }
    let volumes = host_pods_dir.join(uid).join("volumes");
    let plugins = match std::fs::read_dir(&volumes) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FolderError::NoPod {
                uid: uid.into(),
                host_pods_dir: host_pods_dir.display().to_string(),
            });
        }
        Err(source) => {
            return Err(FolderError::Io {
                path: volumes.display().to_string(),
                source,
            });
        }
    };
    let mut plugin_dirs: Vec<PathBuf> = plugins
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    plugin_dirs.sort();
    for plugin in plugin_dirs {
        let candidate = plugin.join(name);
        if !candidate.is_dir() {
            continue;
        }
        let is_csi = plugin
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == "kubernetes.io~csi");
        let mount = candidate.join("mount");
        return Ok(if is_csi && mount.is_dir() {
            mount
        } else {
            candidate
        });
    }
    Err(FolderError::NoVolume {
        name: name.into(),
        volumes: volumes.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_empty_dirs_claims_and_csi_mounts() {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = root.path().join("u1/volumes");
        std::fs::create_dir_all(pod.join("kubernetes.io~empty-dir/scratch")).expect("mkdir");
        std::fs::create_dir_all(pod.join("kubernetes.io~csi/pv-1/mount")).expect("mkdir");
        std::fs::create_dir_all(pod.join("kubernetes.io~local-volume/pv-2")).expect("mkdir");
        let find = |name: &str| volume_folder(root.path(), "u1", name);
        assert_eq!(
            find("scratch").expect("scratch"),
            pod.join("kubernetes.io~empty-dir/scratch")
        );
        assert_eq!(
            find("pv-1").expect("csi"),
            pod.join("kubernetes.io~csi/pv-1/mount")
        );
        assert_eq!(
            find("pv-2").expect("local"),
            pod.join("kubernetes.io~local-volume/pv-2")
        );
        assert!(matches!(find("nope"), Err(FolderError::NoVolume { .. })));
        assert!(matches!(
            volume_folder(root.path(), "u2", "scratch"),
            Err(FolderError::NoPod { .. })
        ));
    }

    #[test]
    fn names_cannot_climb_out_of_the_pods_folder() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(volume_folder(root.path(), "..", "x").is_err());
        assert!(volume_folder(root.path(), "u1", "../../etc").is_err());
    }
}
