//! The demo target's gRPC event handler: both seed event services, feeding the goal
//! store (memory, or PostgreSQL through the buffered writer). The same knobs as HTTP
//! apply; an injected failure answers UNAVAILABLE.

use crate::demo::state::{DemoState, Received};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub mod pb {
    pub mod account {
        tonic::include_proto!("iam.account.v1");
    }
    pub mod statistic {
        tonic::include_proto!("social.statistic.v1");
    }
}

use pb::account::user_authentication_user_logged_in_service_server::{
    UserAuthenticationUserLoggedInService, UserAuthenticationUserLoggedInServiceServer,
};
use pb::account::UserLoggedIn;
use pb::statistic::statistic_stat_item_updated_service_server::{
    StatisticStatItemUpdatedService, StatisticStatItemUpdatedServiceServer,
};
use pb::statistic::StatItemUpdated;

/// Both services share the demo state.
#[derive(Clone)]
pub struct Handler(pub Arc<DemoState>);

impl Handler {
    async fn handle(&self, method: &'static str, ev: Received) -> Result<Response<()>, Status> {
        let st = &self.0;
        let start = Instant::now();
        let now = st.grpc_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        st.grpc_peak.fetch_max(now, Ordering::AcqRel);
        st.metrics.grpc_in_flight.inc();
        let result = async {
            // The permit (concurrency limit) is held until the event is handled.
            let (fail, _permit) = st.apply_knobs().await;
            if fail {
                return Err(Status::unavailable("injected failure"));
            }
            st.record(ev.clone());
            let value = if method == "login" {
                st.count_login(&ev.user_id) as i64
            } else {
                ev.latest_value as i64
            };
            let stat = if method == "login" {
                "login_days_daily"
            } else {
                ev.stat_code.as_str()
            };
            st.store
                .apply(&st.index, &ev.user_id, stat, value, &ev.namespace)
                .map_err(Status::resource_exhausted)?;
            Ok(Response::new(()))
        }
        .await;
        let code = match &result {
            Ok(_) => "ok".to_string(),
            Err(s) => crate::drivers::grpc::code_kind(s.code())
                .trim_start_matches("grpc_")
                .to_string(),
        };
        st.metrics
            .grpc_request(method, &code, start.elapsed().as_secs_f64());
        st.metrics.grpc_in_flight.dec();
        st.grpc_in_flight.fetch_sub(1, Ordering::AcqRel);
        result
    }
}

fn traceparent(md: &tonic::metadata::MetadataMap) -> String {
    md.get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn trace(md: &tonic::metadata::MetadataMap) -> String {
    md.get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tonic::async_trait]
impl UserAuthenticationUserLoggedInService for Handler {
    async fn on_message(&self, req: Request<UserLoggedIn>) -> Result<Response<()>, Status> {
        let (t, tp) = (trace(req.metadata()), traceparent(req.metadata()));
        let m = req.into_inner();
        let user = if m.user_id.is_empty() {
            m.payload
                .as_ref()
                .map(|p| p.user_id.clone())
                .unwrap_or_default()
        } else {
            m.user_id.clone()
        };
        if user.is_empty() {
            return Err(Status::invalid_argument("user_id is empty"));
        }
        self.handle(
            "login",
            Received {
                service: "iam.account.v1.UserAuthenticationUserLoggedInService".into(),
                id: m.id,
                namespace: m.namespace,
                user_id: user,
                stat_code: String::new(),
                latest_value: 0.0,
                metadata_trace: t,
                traceparent: tp,
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl StatisticStatItemUpdatedService for Handler {
    async fn on_message(&self, req: Request<StatItemUpdated>) -> Result<Response<()>, Status> {
        let (t, tp) = (trace(req.metadata()), traceparent(req.metadata()));
        let m = req.into_inner();
        let Some(p) = m.payload else {
            return Err(Status::invalid_argument("payload is missing"));
        };
        let user = if p.user_id.is_empty() {
            m.user_id.clone()
        } else {
            p.user_id.clone()
        };
        if user.is_empty() || p.stat_code.is_empty() {
            return Err(Status::invalid_argument(
                "user_id and stat_code are required",
            ));
        }
        self.handle(
            "stat",
            Received {
                service: "social.statistic.v1.StatisticStatItemUpdatedService".into(),
                id: m.id,
                namespace: m.namespace,
                user_id: user,
                stat_code: p.stat_code,
                latest_value: p.latest_value,
                metadata_trace: t,
                traceparent: tp,
            },
        )
        .await
    }
}

/// Serves both event services until `shutdown`, counting accepted connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    st: Arc<DemoState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, st, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (with a client CA there, only clients
/// presenting a certificate from it get through).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    st: Arc<DemoState>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let counter = st.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |c| {
        if let Ok(s) = &c {
            counter.grpc_connections.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_nodelay(true);
        }
        c
    });
    let h = Handler(st);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        // The seed's platform keeps up to 500 calls in flight on one connection.
        .max_concurrent_streams(Some(2048))
        .add_service(UserAuthenticationUserLoggedInServiceServer::new(h.clone()))
        .add_service(StatisticStatItemUpdatedServiceServer::new(h))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
