//! A form-posting HTTP client with a cookie jar, for page tests at the HTTP level: it follows
//! no redirect by itself (tests assert where each one goes) and reads CSRF tokens out of forms.

use std::collections::BTreeMap;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

/// One answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect goes.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        self.input_value("csrf").expect("a form with a CSRF token")
    }

    /// The `value` of the first `<input name="{name}">`.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let tag_start = self.body[..at].rfind('<')?;
        let tag_end = at + self.body[at..].find('>')?;
        let tag = &self.body[tag_start..tag_end];
        let v = tag.find("value=\"")? + 7;
        let end = tag[v..].find('"')? + v;
        Some(tag[v..end].replace("&amp;", "&").replace("&quot;", "\""))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Debug)]
pub struct Browser {
    pub base: String,
    http: reqwest::Client,
    /// Cookie name → value.
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        Browser { base: base.trim_end_matches('/').to_owned(), http, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(SET_COOKIE) {
            let text = v.to_str().unwrap_or_default();
            let first = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = first.split_once('=') {
                if value.is_empty() || text.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    async fn read(&mut self, resp: reqwest::Response) -> Page {
        self.keep_cookies(&resp);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Page { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        let resp = self.http.get(url).header(COOKIE, self.cookie_header()).send().await.unwrap();
        self.read(resp).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[]).await
    }

    /// A form post with extra headers (`Sec-Fetch-Site`, `Origin`…).
    pub async fn post_with(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut rb = self.http.post(format!("{}{path}", self.base)).header(COOKIE, self.cookie_header()).form(form);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.unwrap();
        self.read(resp).await
    }

    /// Follows a redirect answer (relative location) with a GET.
    pub async fn follow(&mut self, page: &Page) -> Page {
        let to = page.location().expect("a redirect").to_owned();
        self.get(&to).await
    }
}
