//! Bounds on every call the host makes to a real Redis server (outbound
//! Redis, the key-value store on Redis, the Redis trigger): connecting by
//! [`CONNECT_TIMEOUT`], each reply by [`RESPONSE_TIMEOUT`], a whole call,
//! waiting for a reconnection included, by [`CALL_TIMEOUT`]. A stopped Redis
//! therefore fails a guest's call in well under a few seconds, with an
//! error whose text starts with [`UNAVAILABLE`] (see [`describe`]), instead
//! of holding the request through the client library's reconnect loop.

use std::future::Future;
use std::time::Duration;

/// Longest one attempt to open a connection to a Redis server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a command may wait for its reply on an open connection.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one call may take as the guest sees it, including waiting for a
/// reconnection in progress (connect, a short back-off, connect again).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How an error that means "Redis did not answer" begins, so an app can
/// tell an outage (answer 503, retry later) from a bug.
pub const UNAVAILABLE: &str = "unavailable:";

/// Connection-manager settings for every real Redis connection: bounded
/// connects and replies, and one quick retry when reconnecting (the caller
/// gets an error fast; the next call tries again).
pub fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}

/// A connection manager for `url`, connected within [`CALL_TIMEOUT`].
pub async fn connect(url: &str) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    bounded(redis::aio::ConnectionManager::new_with_config(
        client,
        manager_config(),
    ))
    .await
}

/// `call`, failed with a time-out error after [`CALL_TIMEOUT`].
pub async fn bounded<T>(
    call: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {CALL_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// Whether `e` means the server could not be reached or did not answer
/// (rather than refusing the command).
pub fn is_outage(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || e.code() == Some("LOADING")
}

/// The text a guest gets for `e`: outages start with [`UNAVAILABLE`]. No
/// address is included (a Redis URL may carry a password).
pub fn describe(e: &redis::RedisError) -> String {
    if is_outage(e) {
        format!("{UNAVAILABLE} Redis did not answer ({e}); retry later")
    } else {
        e.to_string()
    }
}

/// `address` without its credentials (`redis://user:secret@host` →
/// `redis://***@host`), for logs.
pub fn redacted(address: &str) -> String {
    match (address.find("://"), address.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &address[..scheme_end + 3], &address[at..])
        }
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_addresses_carry_no_password() {
        assert_eq!(redacted("redis://:pw@h:6379"), "redis://***@h:6379");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn outages_are_recognisable_and_refusals_are_not() {
        let refused: redis::RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert!(
            describe(&refused).starts_with(UNAVAILABLE),
            "{}",
            describe(&refused)
        );
        let wrong_type: redis::RedisError =
            (redis::ErrorKind::UnexpectedReturnType, "not a number").into();
        assert!(!describe(&wrong_type).starts_with(UNAVAILABLE));
    }

    #[tokio::test]
    async fn a_call_that_never_answers_times_out() {
        let never = std::future::pending::<redis::RedisResult<()>>();
        let e = bounded(never).await.unwrap_err();
        assert!(is_outage(&e) && describe(&e).starts_with(UNAVAILABLE));
    }
}
