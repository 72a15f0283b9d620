//! Checks of the network keys of `[cxone]` and `[dead_letter]`: `proxy`,
//! `proxy_auth_env` and `ca_file`. A CA file is read here, so a missing or unreadable
//! file, or one without PEM certificates, is reported at its key before anything runs.

use super::location::{Document, Problem, Seg};
use super::secret::is_env_var_name;
use super::Config;
use crate::net::{tls, Proxy};

/// Every problem of the network keys.
pub fn check(doc: &Document<'_>, config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (table, proxy, auth_env, ca_file) in [
        (
            "cxone",
            &config.cxone.proxy,
            &config.cxone.proxy_auth_env,
            &config.cxone.ca_file,
        ),
        (
            "dead_letter",
            &config.dead_letter.proxy,
            &config.dead_letter.proxy_auth_env,
            &config.dead_letter.ca_file,
        ),
    ] {
        let at = |key| [Seg::Key(table), Seg::Key(key)];
        if !proxy.trim().is_empty() {
            match Proxy::parse(proxy) {
                Err(e) => problems.push(doc.problem(&at("proxy"), e.to_string())),
                Ok(p) if p.authorization.is_some() => problems.push(doc.problem(
                    &at("proxy"),
                    "credentials in the proxy URL are refused in the config file; put user:password in an environment variable named by proxy_auth_env",
                )),
                Ok(_) => {}
            }
        }
        if !auth_env.is_empty() {
            if !is_env_var_name(auth_env) {
                problems.push(doc.problem(
                    &at("proxy_auth_env"),
                    "expected the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*); literal secrets are refused",
                ));
            } else if proxy.trim().is_empty() {
                problems.push(doc.problem(
                    &at("proxy_auth_env"),
                    format!(
                        "expected together with {table}.proxy (credentials for an environment proxy go in its URL)"
                    ),
                ));
            }
        }
        if !ca_file.trim().is_empty() {
            if let Err(e) = tls::read_ca_file(std::path::Path::new(ca_file.trim())) {
                problems.push(doc.problem(&at("ca_file"), e.to_string()));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let doc = Document::new(Path::new("c.toml"), text);
        let config: Config = toml::from_str(text).unwrap();
        check(&doc, &config).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn network_keys_are_checked_at_their_lines() {
        let text = "[cxone]\nbase_url = \"simulator\"\nproxy = \"socks5://h:1080\"\nca_file = \"/nonexistent/ca.pem\"\n[dead_letter]\nproxy = \"http://user:hunter2@h:3128\"\nproxy_auth_env = \"not a name\"\n";
        let found = problems(text);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("c.toml:3:1: cxone.proxy: unsupported proxy scheme"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("c.toml:4:1: cxone.ca_file: cannot read /nonexistent/ca.pem"),
            "{}",
            found[1]
        );
        assert!(
            found[2].starts_with("c.toml:6:1: dead_letter.proxy: credentials in the proxy URL"),
            "{}",
            found[2]
        );
        assert!(
            found[3].starts_with("c.toml:7:1: dead_letter.proxy_auth_env: expected the name"),
            "{}",
            found[3]
        );
        assert!(found.iter().all(|p| !p.contains("hunter2")), "{found:#?}");
    }

    #[test]
    fn credentials_need_a_configured_proxy() {
        let found = problems("[cxone]\nproxy_auth_env = \"PROXY_AUTH\"\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("expected together with cxone.proxy"), "{}", found[0]);
        assert!(problems("[cxone]\nproxy = \"proxy.corp:3128\"\nproxy_auth_env = \"PROXY_AUTH\"\n").is_empty());
    }
}
