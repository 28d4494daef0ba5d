//! `arca version`.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use crate::Ctx;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    println!("Client: arca {}", env!("CARGO_PKG_VERSION"));
    let server = async {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client().await?, &ctx.namespace);
        let deployment = deployments.get_opt("arca").await?;
        anyhow::Ok(
            deployment.and_then(|d| d.spec?.template.spec?.containers.first()?.image.clone()),
        )
    };
    match server.await {
        Ok(Some(image)) => println!(
            "Server: {image} (Deployment arca in namespace {})",
            ctx.namespace
        ),
        Ok(None) => println!(
            "Server: not installed in namespace {} (`arca install`)",
            ctx.namespace
        ),
        Err(e) => println!("Server: unknown ({e})"),
    }
    Ok(())
}
