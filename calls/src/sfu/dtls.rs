//! str0m's DTLS (dimpl) with a short first retransmission timer.
//!
//! dimpl retransmits an unanswered flight after 1 s (±25 %). ffmpeg's WHIP muxer (we are the DTLS
//! client for it: it offers `a=setup:passive`) reads our first ClientHello off its socket itself
//! and never hands it to OpenSSL, so every ffmpeg publish waited for that retransmission. 100 ms
//! still covers a few RTTs of a far client; more retries keep the give-up time near the default.

use std::{sync::Arc, time::Duration, time::Instant};

use str0m::crypto::{
    dtls::{
        DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion,
        ProtocolVersion,
    },
    CryptoError, CryptoProvider,
};

const FIRST_RETRANSMIT: Duration = Duration::from_millis(100);
/// 100 ms doubled 8 times: the last try goes out ~51 s in, past dimpl's 40 s handshake timeout.
const RETRIES: usize = 8;

#[derive(Debug)]
struct QuickDtls;

static QUICK_DTLS: QuickDtls = QuickDtls;

/// The feature-flag crypto provider with [`QuickDtls`] for DTLS.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        dtls_provider: &QUICK_DTLS,
        ..str0m::crypto::from_feature_flags()
    })
}

impl DtlsProvider for QuickDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // As str0m's own provider: ICE already proved return routability, so no cookie.
        let mut builder = dimpl::Config::builder()
            .use_server_cookie(false)
            .flight_start_rto(FIRST_RETRANSMIT)
            .flight_retries(RETRIES);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("dimpl config: {e}")))?,
        );
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("DTLS version {other}"))),
        };
        Ok(Box::new(Instance(dtls)))
    }
}

struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dimpl::Dtls")
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active)
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.0.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flights (DTLS records) the instance sends now, and when it wants its next timeout.
    fn drain(dtls: &mut dyn DtlsInstance) -> (usize, Instant) {
        let mut buf = vec![0u8; 4096];
        let mut packets = 0;
        loop {
            match dtls.poll_output(&mut buf) {
                DtlsOutput::Packet(_) => packets += 1,
                DtlsOutput::Timeout(at) => return (packets, at),
                _ => {}
            }
        }
    }

    #[test]
    fn an_unanswered_client_hello_is_sent_again_after_about_100_ms() {
        let provider = crypto_provider();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        let start = Instant::now();
        let mut dtls = provider
            .dtls_provider
            .new_dtls(&cert, start, DtlsVersion::Dtls12, None)
            .expect("dtls");
        dtls.set_active(true);
        dtls.handle_timeout(start).expect("start");
        let (first, next) = drain(dtls.as_mut());
        assert!(first >= 1, "the ClientHello goes out at once");
        let wait = next.saturating_duration_since(start);
        // The default (1 s ± 25 %) would wait at least 750 ms.
        assert!(
            wait <= Duration::from_millis(200),
            "first retransmission after {wait:?}"
        );
        dtls.handle_timeout(next).expect("timeout");
        let (again, _) = drain(dtls.as_mut());
        assert!(again >= 1, "the ClientHello is retransmitted");
    }
}
