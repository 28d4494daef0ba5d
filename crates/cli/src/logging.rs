//! Logs: JSON inside a cluster (for log collectors), readable text in a terminal.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,aws=warn,hyper=warn"));
    let json = match format {
        "json" => true,
        "text" => false,
        _ => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
