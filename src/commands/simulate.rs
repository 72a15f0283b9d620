//! `actionwarden simulate`: the CXone simulator in the foreground.

use std::io::Write;

use crate::cli::Command;
use crate::config::duration;
use crate::error::{exit, Error};
use crate::simulator::{self, SimulatorSettings};

/// Runs the simulator until SIGTERM/SIGINT. Prints `listening on http://ADDR` on stdout
/// once bound, so scripts and tests can pick up an ephemeral port.
pub fn simulate(command: Command) -> Result<u8, Error> {
    let Command::Simulate {
        listen,
        profile,
        seed,
        client_id,
        client_secret_env,
        token_ttl,
        webhook_secret_env,
        webhook_fail_first,
        header_only_rate,
        rate_limit_rate,
        server_error_rate,
        malformed_rate,
        drop_rate,
        early_expiry_rate,
        latency,
        token_latency,
        retry_after_form,
        retry_after_secs,
    } = command
    else {
        unreachable!("dispatched on Simulate");
    };
    let mut s = SimulatorSettings::default();
    if let Some(v) = profile {
        s.profile = v;
    }
    if let Some(v) = seed {
        s.seed = v;
    }
    if let Some(v) = client_id {
        s.client_id = v;
    }
    if let Some(v) = client_secret_env {
        s.client_secret_env = v;
    }
    if let Some(v) = token_ttl {
        s.token_ttl = duration::parse(&v).map_err(|e| Error::Argument {
            flag: "--token-ttl",
            problem: e.to_string(),
        })?;
    }
    if let Some(v) = webhook_secret_env {
        s.webhook_secret_env = v;
    }
    if let Some(v) = webhook_fail_first {
        s.webhook_fail_first = v;
    }
    if let Some(v) = retry_after_form {
        s.retry_after_form = v;
    }
    if let Some(v) = retry_after_secs {
        s.retry_after_secs = v;
    }
    if let Some(v) = latency {
        s.latency = Some(duration::parse(&v).map_err(|e| Error::Argument {
            flag: "--latency",
            problem: e.to_string(),
        })?);
    }
    if let Some(v) = token_latency {
        s.token_latency = duration::parse(&v).map_err(|e| Error::Argument {
            flag: "--token-latency",
            problem: e.to_string(),
        })?;
    }
    for (name, value) in [
        ("--header-only-rate", header_only_rate),
        ("--rate-limit-rate", rate_limit_rate),
        ("--server-error-rate", server_error_rate),
        ("--malformed-rate", malformed_rate),
        ("--drop-rate", drop_rate),
        ("--early-expiry-rate", early_expiry_rate),
    ] {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(Error::Argument {
                flag: name,
                problem: "expected a share between 0.0 and 1.0".into(),
            });
        }
    }
    s.header_only_rate = header_only_rate.or(s.header_only_rate);
    s.rate_limit_rate = rate_limit_rate.or(s.rate_limit_rate);
    s.server_error_rate = server_error_rate.or(s.server_error_rate);
    s.malformed_rate = malformed_rate.or(s.malformed_rate);
    s.drop_rate = drop_rate.or(s.drop_rate);
    s.early_expiry_rate = early_expiry_rate.or(s.early_expiry_rate);

    crate::telemetry::logging::init(crate::config::LogFormat::Text, "info");
    actix_rt::System::new().block_on(async move {
        let running = simulator::start(&listen, s).await?;
        println!("listening on {}", running.base_url());
        let _ = std::io::stdout().flush();
        crate::app::wait_for_stop_signal().await?;
        running.handle.stop(true).await;
        Ok(exit::OK)
    })
}
