//! Requests the host sends to the app itself on a schedule
//! (`--schedule 30s=/maintenance/run`): what a platform's cron does for an
//! app with no long-lived process (Akamai Functions' cron, a Kubernetes
//! `CronJob`), here for local runs. Each is a real `POST` over loopback to
//! the host's own listener, so it passes the same route table, limits and
//! logging as any client's.
//!
//! Headers (`--schedule-header 'authorization: Bearer {{ maintenance_token }}'`)
//! may use the app's variables; their values are never printed.

use anyhow::{Context as _, Result, bail};
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::time::Duration;

/// Longest one scheduled request may take before the host gives up on it
/// (the next tick tries again).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `EVERY=PATH`: `POST PATH` every `EVERY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub path: String,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule> {
        let Some((every, path)) = s.split_once('=') else {
            bail!("expected EVERY=PATH (e.g. 30s=/maintenance/run), got `{s}`");
        };
        let every = parse_interval(every)?;
        if !path.starts_with('/') {
            bail!("the path of `{s}` must start with `/`");
        }
        path.parse::<http::uri::PathAndQuery>()
            .with_context(|| format!("`{path}` is not a valid request path"))?;
        Ok(Schedule {
            every,
            path: path.to_string(),
        })
    }
}

/// `500ms`, `30s`, `5m`, `1h`; at least one second (a schedule, not a
/// load generator).
fn parse_interval(s: &str) -> Result<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("`{s}` is not an interval like 30s, 5m or 1h"))?;
    let every = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("`{s}`: the unit must be ms, s, m or h"),
    };
    if every < Duration::from_secs(1) {
        bail!("`{s}`: a schedule runs at most once a second");
    }
    Ok(every)
}

/// `NAME: VALUE-TEMPLATE` of a `--schedule-header`.
pub fn parse_header(s: &str) -> Result<(HeaderName, String)> {
    let Some((name, value)) = s.split_once(':') else {
        bail!("expected `NAME: VALUE`, got a header without `:`");
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("`{}` is not a header name", name.trim()))?;
    Ok((name, value.trim().to_string()))
}

/// Sends every schedule's request to `addr` for as long as the host runs.
/// Failures are reported on stderr (status and route, never a header).
pub fn start(schedules: Vec<Schedule>, headers: Vec<(HeaderName, HeaderValue)>, addr: SocketAddr) {
    for schedule in schedules {
        let headers = headers.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(schedule.every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate: wait one period
            loop {
                ticks.tick().await;
                let outcome =
                    tokio::time::timeout(REQUEST_TIMEOUT, send(addr, &schedule.path, &headers))
                        .await
                        .unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))
                        });
                match outcome {
                    Ok(status) if status.is_success() => {}
                    Ok(status) => eprintln!("schedule: POST {} answered {status}", schedule.path),
                    Err(e) => eprintln!("schedule: POST {} failed: {e:#}", schedule.path),
                }
            }
        });
    }
}

async fn send(
    addr: SocketAddr,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<http::StatusCode> {
    use http_body_util::{BodyExt as _, Empty};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::post(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<bytes::Bytes>::new())?;
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let response = sender.send_request(request).await?;
    let status = response.status();
    // Read the answer to its end, so the request completes normally.
    response.into_body().collect().await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_their_units() {
        assert_eq!(
            Schedule::parse("30s=/maintenance/run").unwrap(),
            Schedule {
                every: Duration::from_secs(30),
                path: "/maintenance/run".into()
            }
        );
        assert_eq!(
            Schedule::parse("5m=/a?b=c").unwrap().every,
            Duration::from_secs(300)
        );
        assert_eq!(
            Schedule::parse("1500ms=/x").unwrap().every,
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = |s: &str| format!("{:#}", Schedule::parse(s).unwrap_err());
        assert!(e("/maintenance/run").contains("EVERY=PATH"));
        assert!(e("30=/x").contains("unit"));
        assert!(e("10ms=/x").contains("once a second"));
        assert!(e("30s=maintenance").contains("must start with `/`"));
        assert!(e("xs=/x").contains("interval"));
    }

    #[test]
    fn headers_split_at_the_first_colon() {
        let (name, value) = parse_header("Authorization: Bearer {{ token }}").unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value, "Bearer {{ token }}");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
