//! "Export my data" (a JSON download of every row of the account) and "Delete my account"
//! (confirmed with the password; the browser is logged out).

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, SET_COOKIE};
use layers_core::identity::IdentityError;
use secrecy::SecretString;
use serde::Deserialize;

use super::session::SignedIn;
use super::{PageError, PageForm};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

pub async fn export(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<ConfirmForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let data = state.core.identity.export(&who.user, &who.client).await?;
    let body = serde_json::to_vec_pretty(&data).map_err(|e| PageError::Internal(e.to_string()))?;
    let date = time::OffsetDateTime::now_utc().date();
    let disposition = format!("attachment; filename=\"layers-export-{date}.json\"");
    Ok(([(CONTENT_TYPE, "application/json".to_owned()), (CONTENT_DISPOSITION, disposition)], body).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    who: SignedIn,
    PageForm(form): PageForm<ConfirmForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&state, &form.csrf)?;
    let password = SecretString::from(form.password);
    match state.core.delete_account(&who.user, &password, &who.client).await {
        Ok(()) => {
            let mut resp = Redirect::to("/login?notice=deleted").into_response();
            resp.headers_mut().append(SET_COOKIE, state.cookies.clear_session());
            Ok(resp)
        }
        Err(e @ (IdentityError::WrongPassword | IdentityError::Throttled(_) | IdentityError::ReauthRequired)) => {
            let notice = super::settings::refusal_notice(&e, "delete_wrong_password");
            Ok(Redirect::to(&format!("/dashboard/settings?notice={notice}#delete")).into_response())
        }
        Err(other) => Err(other.into()),
    }
}
