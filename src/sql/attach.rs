//! `ATTACH 'uri' AS name (TYPE mongodb | iceberg [, key 'value' ...])` and the options each
//! catalog type accepts.

use sqlparser::tokenizer::Token;

use super::option_value::{RawOption, boolean, given_twice, one_of, positive, unknown};
use super::parser::StatementParser;
use super::statement::{Attach, AttachKind};
use crate::{Error, Result};

const EXAMPLE: &str = "e.g. ATTACH 'mongodb://localhost:27017' AS mongo (TYPE mongodb)";

impl StatementParser<'_> {
    /// Parses an `ATTACH` statement from its first word.
    pub(crate) fn parse_attach(&mut self) -> Result<Attach> {
        self.parser.advance_token();
        let Token::SingleQuotedString(uri) = self.parser.peek_token().token else {
            return Err(self.expected("a quoted URI after ATTACH").with_hint(EXAMPLE));
        };
        self.parser.advance_token();
        self.expect_word("AS", "after the URI of ATTACH")?;
        let name = self.parse_ident("a catalog name after AS")?;
        let missing_type = |at| {
            Error::sql(format!("missing TYPE in ATTACH {name}"), at)
                .with_hint("add (TYPE mongodb) or (TYPE iceberg) after the name")
        };
        if !self.parser.consume_token(&Token::LParen) {
            return Err(missing_type(self.peek_location()));
        }
        let mut kind = None;
        let mut options = Vec::new();
        loop {
            let key_at = self.peek_location();
            if self.peek_words::<1>()[0] == "TYPE" {
                if kind.is_some() {
                    return Err(Error::sql("TYPE given twice", key_at).with_hint("give TYPE once"));
                }
                self.parser.advance_token();
                kind = Some(self.parse_attach_kind()?);
            } else {
                let key = self.parse_option_key()?;
                options.push(self.parse_option_value(key, key_at)?);
            }
            if self.parser.consume_token(&Token::RParen) {
                break;
            }
            self.expect_token(&Token::Comma, ", or ) after an ATTACH option")?;
        }
        let Some(kind) = kind else {
            return Err(missing_type(self.location_of_current()));
        };
        let options = attach_options(kind, options)?;
        Ok(Attach { uri, name, kind, options })
    }

    /// `mongodb` or `iceberg`, as a word or a string.
    fn parse_attach_kind(&mut self) -> Result<AttachKind> {
        let at = self.peek_location();
        let kind = match &self.parser.peek_token_ref().token {
            Token::Word(word) => word.value.to_ascii_lowercase(),
            Token::SingleQuotedString(text) => text.to_ascii_lowercase(),
            _ => return Err(self.expected("mongodb or iceberg after TYPE")),
        };
        self.parser.advance_token();
        match kind.as_str() {
            "mongodb" => Ok(AttachKind::Mongodb),
            "iceberg" => Ok(AttachKind::Iceberg),
            _ => Err(Error::sql(format!("unknown ATTACH TYPE `{kind}`"), at)
                .with_hint("TYPE must be mongodb or iceberg")),
        }
    }
}

/// Checks the options of an `ATTACH` of `kind`; returns them as `(key, value)` pairs (the
/// `catalog` value lower-cased).
fn attach_options(kind: AttachKind, raw: Vec<RawOption>) -> Result<Vec<(String, String)>> {
    let mut options: Vec<(String, String)> = Vec::new();
    for option in raw {
        if options.iter().any(|(key, _)| *key == option.key) {
            return Err(given_twice(&option));
        }
        check_attach_option(kind, &option)?;
        let value = match option.key.as_str() {
            "catalog" => option.value.text().to_ascii_lowercase(),
            _ => option.value.text().to_string(),
        };
        options.push((option.key, value));
    }
    Ok(options)
}

const MONGODB_OPTIONS: [&str; 1] = ["sample_size"];
const ICEBERG_OPTIONS: [&str; 16] = [
    "catalog",
    "warehouse",
    "credential",
    "token",
    "prefix",
    "oauth2-server-uri",
    // The OAuth2 client-credentials request's scope (Polaris: 'PRINCIPAL_ROLE:ALL'), audience
    // and resource; read by the REST client and misql's own token exchange.
    "scope",
    "audience",
    "resource",
    "rest.client.socket-timeout-ms",
    // SigV4 (src/lake/sigv4): the names pyiceberg and Iceberg Java use.
    "rest.sigv4-enabled",
    "rest.signing-name",
    "rest.signing-region",
    "rest.access-key-id",
    "rest.secret-access-key",
    "rest.session-token",
];
/// Every `s3.*` and `client.*` key is passed on to the Iceberg FileIO / REST client; every
/// `header.<name>` is sent as an HTTP header with each REST catalog request (for example
/// `"header.X-Iceberg-Access-Delegation" 'vended-credentials'`).
const ICEBERG_PREFIXES: [&str; 3] = ["s3.", "client.", "header."];

fn check_attach_option(kind: AttachKind, option: &RawOption) -> Result<()> {
    let key = option.key.as_str();
    let what = || format!("option `{key}` for TYPE {}", kind.name());
    match kind {
        AttachKind::Mongodb if key == "sample_size" => positive::<usize>(option).map(drop),
        AttachKind::Mongodb => Err(unknown(&what(), option, &MONGODB_OPTIONS)),
        AttachKind::Iceberg if key == "catalog" => {
            one_of(option, |name| ["sql", "rest"].contains(&name).then_some(()), &["sql", "rest"])
        }
        AttachKind::Iceberg if key == "rest.sigv4-enabled" => boolean(option).map(drop),
        AttachKind::Iceberg if key == "rest.client.socket-timeout-ms" => {
            positive::<u64>(option).map(drop)
        }
        AttachKind::Iceberg if ICEBERG_OPTIONS.contains(&key) => Ok(()),
        AttachKind::Iceberg if ICEBERG_PREFIXES.iter().any(|prefix| is_prefixed(key, prefix)) => {
            Ok(())
        }
        AttachKind::Iceberg => {
            let valid = [&ICEBERG_OPTIONS[..], &["s3.*", "client.*", "header.*"]].concat();
            Err(unknown(&what(), option, &valid))
        }
    }
}

fn is_prefixed(key: &str, prefix: &str) -> bool {
    key.len() > prefix.len() && key.starts_with(prefix)
}
