//! `arca hold`: the one container of a data mover pod. The pod exists only so that kubelet
//! mounts a volume restored from a CSI snapshot on a node, where the node agent reads it; the
//! container does nothing until the operator deletes the pod (SIGTERM). No API access, no
//! network, and it never reads the volume itself.

pub fn run() -> anyhow::Result<()> {
    println!("arca-hold: holding the volume mounted for the node agent until the pod is deleted");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::server::shutdown_signal());
    println!("arca-hold: asked to stop");
    Ok(())
}
