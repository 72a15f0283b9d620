//! The network part of `actionwarden check`: for each configured host, whether it is
//! reached directly or through which proxy (never its credentials), and which trusted
//! roots are added. Reads the environment and the CA files; contacts nothing.

use std::fmt::Write as _;

use crate::config::{Config, WebhookTarget};
use crate::net::{self, EgressSettings, EnvProxies, NetError, ProxyPolicy};

/// Where the embedded simulator listens, as far as routing is concerned.
const EMBEDDED: &str = "http://127.0.0.1";

/// The `network:` section of the plan.
pub fn section(config: &Config, env: &EnvProxies) -> Result<String, NetError> {
    let cx = EgressSettings::cxone(config);
    let dl = EgressSettings::dead_letter(config);
    let (cx_policy, dl_policy) = (cx.policy(env)?, dl.policy(env)?);
    let mut hosts: Vec<(&str, String, &ProxyPolicy, String)> = Vec::new();
    if config.cxone.uses_simulator() {
        hosts.push((
            "cxone.base_url",
            "embedded simulator".into(),
            &cx_policy,
            EMBEDDED.into(),
        ));
    } else {
        let base = config.cxone.base_url.clone();
        hosts.push(("cxone.base_url", net::host_port(&base), &cx_policy, base.clone()));
        let token = &config.cxone.token_url;
        if !token.is_empty() && net::host_port(token) != net::host_port(&base) {
            hosts.push(("cxone.token_url", net::host_port(token), &cx_policy, token.clone()));
        }
    }
    match &config.dead_letter.webhook_url {
        WebhookTarget::None => {}
        WebhookTarget::Simulator => hosts.push((
            "dead_letter.webhook_url",
            "embedded simulator".into(),
            &dl_policy,
            EMBEDDED.into(),
        )),
        WebhookTarget::Url(url) => hosts.push((
            "dead_letter.webhook_url",
            net::host_port(url.as_str()),
            &dl_policy,
            url.to_string(),
        )),
    }

    let mut out = String::from("network:\n");
    for (key, shown, policy, url) in hosts {
        let route = net::route_of(policy, &url).map_or_else(|| "not an http(s) URL".to_owned(), |r| r.to_string());
        let _ = writeln!(out, "  {key:<24} {shown:<32} {route}");
    }
    for settings in [&cx, &dl] {
        if !settings.proxy_auth_env.is_empty() {
            let set = std::env::var_os(settings.proxy_auth_env).is_some();
            let _ = writeln!(
                out,
                "  {}.proxy credentials: from env {} ({})",
                settings.table,
                settings.proxy_auth_env,
                if set { "set" } else { "NOT SET" }
            );
        }
    }
    let _ = writeln!(out, "  trusted roots: {}", roots(&[&cx, &dl]));
    Ok(out)
}

/// The roots trusted besides the bundled ones: the system store and the CA files.
fn roots(tables: &[&EgressSettings<'_>]) -> String {
    let mut parts = vec!["bundled web PKI roots".to_owned()];
    let overrides: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok().map(|value| format!("{var}={value}")))
        .collect();
    if overrides.is_empty() {
        parts.push("the system store".to_owned());
    } else {
        parts.push(format!("the system store ({})", overrides.join(", ")));
    }
    for settings in tables {
        if let Some(path) = settings.ca_path() {
            let count = net::count_ca_file(&path).map_or_else(
                |e| e.to_string(),
                |n| format!("{n} certificate{}", if n == 1 { "" } else { "s" }),
            );
            parts.push(format!("{}.ca_file {} ({count})", settings.table, path.display()));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvProxies {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EnvProxies::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn shows_each_host_with_its_route_and_never_credentials() {
        let mut config = Config::default();
        config.cxone.token_url = "https://auth.corp.example:8443/token".into();
        config.dead_letter.webhook_url = WebhookTarget::try_from("https://hooks.example.com/dl".to_owned()).unwrap();
        config.dead_letter.proxy = "http://dlproxy:3128".into();
        let env = env(&[
            ("HTTPS_PROXY", "http://user:hunter2@proxy.corp:3128"),
            ("NO_PROXY", ".corp.example"),
        ]);
        let text = section(&config, &env).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("user"), "{text}");
        let line = |key: &str| text.lines().find(|l| l.contains(key)).unwrap_or_default().to_owned();
        assert!(line("cxone.base_url").contains("api.nicecxone.com:443"), "{text}");
        assert!(
            line("cxone.base_url").ends_with("through proxy http://proxy.corp:3128 (HTTPS_PROXY)"),
            "{text}"
        );
        assert!(
            line("cxone.token_url").ends_with("direct (NO_PROXY entry \".corp.example\")"),
            "{text}"
        );
        assert!(
            line("dead_letter.webhook_url").ends_with("through proxy http://dlproxy:3128 (dead_letter.proxy)"),
            "{text}"
        );
    }

    #[test]
    fn the_embedded_simulator_is_a_loopback_target() {
        let mut config = Config::default();
        config.cxone.base_url = crate::config::SIMULATOR.into();
        config.dead_letter.webhook_url = WebhookTarget::Simulator;
        let text = section(&config, &env(&[("HTTPS_PROXY", "http://proxy.corp:3128")])).unwrap();
        assert!(text.contains("embedded simulator"), "{text}");
        assert_eq!(text.matches("direct (loopback target)").count(), 2, "{text}");
        assert!(!text.contains("cxone.token_url"), "{text}");
    }
}
