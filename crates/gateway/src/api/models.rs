//! `GET /v1/models` and `GET /v1/models/{id}`: the models a live provider serves, with what the
//! network knows of each (kind, sha256, licence, royalty, provider count and price range).

use agora_market::Price;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::wire::{ModelAgora, ModelList, ModelObject, PriceRange, PriceRanges};
use super::{Shared, auth, find_model};
use crate::market::{ModelKind, ModelView};

fn range(prices: impl Iterator<Item = u128> + Clone) -> PriceRange {
    PriceRange {
        max: prices.clone().max().unwrap_or(0).to_string(),
        min: prices.min().unwrap_or(0).to_string(),
    }
}

fn model_object(m: &ModelView, prices: &[Price]) -> ModelObject {
    let (kind, endpoints): (_, &'static [&'static str]) = match m.kind {
        ModelKind::Chat => ("chat", &["/v1/chat/completions", "/v1/completions"]),
        ModelKind::Completion => ("completion", &["/v1/completions"]),
        ModelKind::Embedding => ("embedding", &["/v1/embeddings"]),
    };
    ModelObject {
        agora: ModelAgora {
            endpoints,
            family: m.family.clone(),
            kind,
            license: m.license.clone(),
            price_per_mtok: PriceRanges {
                input: range(prices.iter().map(|p| p.input_per_million.0)),
                output: range(prices.iter().map(|p| p.output_per_million.0)),
                unit: "base units (1 AGR = 10^9)",
            },
            providers: prices.len(),
            royalty_bps: m.royalty_bps,
            sha256: m.sha256,
        },
        created: 0,
        id: m.name.clone(),
        object: "model",
        owned_by: m.owner.to_string(),
    }
}

pub(super) async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = auth(&s, &headers) {
        return e.into_response();
    }
    if s.upstream.models().is_empty() {
        s.upstream.refresh().await;
    }
    let data = s
        .upstream
        .models()
        .iter()
        .map(|(m, p)| model_object(m, p))
        .collect();
    Json(ModelList {
        data,
        object: "list",
    })
    .into_response()
}

pub(super) async fn get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = auth(&s, &headers) {
        return e.into_response();
    }
    match s
        .upstream
        .models()
        .iter()
        .find(|(m, _)| m.name == id || m.sha256.to_hex() == id)
    {
        Some((m, p)) => Json(model_object(m, p)).into_response(),
        None => find_model(&s, &id).map(|_| ()).err().map_or_else(
            || StatusCode::NOT_FOUND.into_response(),
            IntoResponse::into_response,
        ),
    }
}
