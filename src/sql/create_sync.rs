//! `CREATE [OR REPLACE] SYNC [IF NOT EXISTS] name FROM src INTO dst [SELECT ...] [WHERE ...]
//! [PARTITION BY ...] [WITH (...)]`: the clauses after `INTO` come in any order, each at most once.

use sqlparser::ast::{Ident, ObjectName, SelectItem};
use sqlparser::tokenizer::Token;

use super::option_value::{OptionValue, RawOption, closest};
use super::options::{SyncOption, SyncOptions};
use super::parser::StatementParser;
use super::statement::{CollectionPattern, CreateSync, PartitionField, Transform};
use crate::{Error, Result};

const SOURCE_HINT: &str = "source must be catalog.database.collection, e.g. mongo.shop.orders";
const TARGET_HINT: &str = "target must be catalog.namespace.table, e.g. lake.shop.orders";
const BUCKET_COUNT: &str = "the number of buckets in bucket(n, column)";
const TRUNCATE_WIDTH: &str = "the width in truncate(w, column)";

/// Words that start a part of `CREATE SYNC`, never a name.
const CLAUSE_WORDS: [&str; 6] = ["FROM", "INTO", "SELECT", "WHERE", "PARTITION", "WITH"];
const TRANSFORMS: &str = "identity(c) or c, year(c), month(c), day(c), hour(c), bucket(n, c), \
                          truncate(w, c)";

impl StatementParser<'_> {
    /// Parses a `CREATE SYNC` from just after `CREATE`.
    pub(crate) fn parse_create_sync(&mut self) -> Result<CreateSync> {
        let or_replace = self.parse_words(&["OR", "REPLACE"]);
        self.expect_word("SYNC", "after CREATE")?;
        let if_not_exists = self.parse_words(&["IF", "NOT", "EXISTS"]);
        if CLAUSE_WORDS.contains(&self.peek_words::<1>()[0].as_str()) {
            return Err(self.expected("a sync name after CREATE SYNC"));
        }
        let name = self.parse_ident("a sync name after CREATE SYNC")?;
        self.expect_word("FROM", &format!("after the sync name {name}"))?;
        let (source, collections) = match self.peek_pattern() {
            Some(n) => self.parse_pattern_source(n, &name.value)?,
            None => (self.parse_three_part_name("source", &name.value, SOURCE_HINT)?, None),
        };
        self.expect_word("INTO", &format!("after the source of SYNC {name}"))?;
        let target = match collections {
            Some(_) => self.parse_namespace_target(&name.value)?,
            None => self.parse_three_part_name("target", &name.value, TARGET_HINT)?,
        };
        let mut sync = CreateSync {
            or_replace,
            if_not_exists,
            name,
            source,
            target,
            collections,
            projection: None,
            projection_text: None,
            selection: None,
            partition_by: Vec::new(),
            options: SyncOptions::default(),
        };
        self.parse_sync_clauses(&mut sync)?;
        Ok(sync)
    }

    /// When the source ahead is a pattern (`mongo.shop.*`, `mongo.shop.orders_*`: a `*` in the
    /// tokens written together), how many tokens it spans.
    fn peek_pattern(&self) -> Option<usize> {
        let mut n = 0;
        let mut star = false;
        loop {
            let token = self.parser.peek_nth_token_ref(n);
            match &token.token {
                Token::Word(_) | Token::Period => {}
                Token::Mul => star = true,
                _ => break,
            }
            let next = self.parser.peek_nth_token_ref(n + 1);
            n += 1;
            if next.span.start != token.span.end {
                break;
            }
        }
        star.then_some(n)
    }

    /// A pattern source of `n` tokens and its `EXCLUDE (...)`.
    fn parse_pattern_source(
        &mut self,
        n: usize,
        sync: &str,
    ) -> Result<(ObjectName, Option<CollectionPattern>)> {
        let at = self.peek_location();
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(&self.parser.next_token().token.to_string());
        }
        let parts: Vec<&str> = text.split('.').collect();
        let hint = "a database sync reads catalog.database.* or catalog.database.prefix_*";
        if parts.len() != 3 || parts[..2].iter().any(|p| p.is_empty() || p.contains('*')) {
            let message = format!("the source of SYNC {sync} ({text}) is not a collection pattern");
            return Err(Error::sql(message, at).with_hint(hint));
        }
        let mut exclude = Vec::new();
        if self.parse_words(&["EXCLUDE"]) {
            self.expect_token(&Token::LParen, "`(` after EXCLUDE")
                .map_err(|e| e.with_hint("EXCLUDE (name, prefix_*, ...)"))?;
            loop {
                let item =
                    self.parse_name_or_glob(&format!("a collection to exclude from {sync}"))?;
                exclude.push(item);
                if self.parser.consume_token(&Token::Comma) {
                    continue;
                }
                self.expect_token(&Token::RParen, "`,` or `)` after an excluded collection")
                    .map_err(|e| e.with_hint("EXCLUDE (name, prefix_*, ...)"))?;
                break;
            }
        }
        let source = ObjectName::from(vec![Ident::new(parts[0]), Ident::new(parts[1])]);
        Ok((source, Some(CollectionPattern { glob: parts[2].to_string(), exclude })))
    }

    /// A collection name or glob written as one run of tokens (`orders`, `tmp_*`, `'a b'`).
    fn parse_name_or_glob(&mut self, what: &str) -> Result<String> {
        let mut text = String::new();
        loop {
            let token = self.parser.peek_token_ref().clone();
            match &token.token {
                Token::Word(w) => text.push_str(&w.value),
                Token::SingleQuotedString(s) if text.is_empty() => {
                    self.parser.advance_token();
                    return Ok(s.clone());
                }
                Token::Mul => text.push('*'),
                _ if text.is_empty() => return Err(self.expected(what)),
                _ => return Ok(text),
            }
            self.parser.advance_token();
            if self.parser.peek_token_ref().span.start != token.span.end {
                return Ok(text);
            }
        }
    }

    /// The `catalog.namespace` a database sync writes its tables into.
    fn parse_namespace_target(&mut self, sync: &str) -> Result<ObjectName> {
        let at = self.peek_location();
        let what = format!("the target of SYNC {sync}");
        let hint = "a database sync writes into catalog.namespace, e.g. lake.shop: each \
                    collection becomes the table lake.shop.<collection>";
        let name = self.parse_object_name(&what).map_err(|error| error.with_hint(hint))?;
        if name.0.len() != 2 {
            let message = format!(
                "{what} has {} parts ({name}), expected 2 for a database sync",
                name.0.len()
            );
            return Err(Error::sql(message, at).with_hint(hint));
        }
        Ok(name)
    }

    fn parse_three_part_name(&mut self, role: &str, sync: &str, hint: &str) -> Result<ObjectName> {
        let at = self.peek_location();
        let what = format!("the {role} of SYNC {sync}");
        if CLAUSE_WORDS.contains(&self.peek_words::<1>()[0].as_str()) {
            return Err(self.expected(&what).with_hint(hint.to_string()));
        }
        let name = self.parse_object_name(&what).map_err(|error| error.with_hint(hint))?;
        if name.0.len() != 3 {
            let parts = match name.0.len() {
                1 => "1 part".to_string(),
                n => format!("{n} parts"),
            };
            let message = format!("{what} has {parts} ({name}), expected 3");
            return Err(Error::sql(message, at).with_hint(hint));
        }
        Ok(name)
    }

    /// `SELECT`, `WHERE`, `PARTITION BY` and `WITH`, in any order, each at most once.
    fn parse_sync_clauses(&mut self, sync: &mut CreateSync) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        loop {
            let at = self.peek_location();
            let clause = match self.peek_words::<1>()[0].as_str() {
                "SELECT" => "SELECT",
                "WHERE" => "WHERE",
                "PARTITION" => "PARTITION BY",
                "WITH" => "WITH",
                _ => break,
            };
            if seen.contains(&clause) {
                let message = format!("{clause} given twice in SYNC {}", sync.name);
                return Err(
                    Error::sql(message, at).with_hint("each clause of CREATE SYNC may appear once")
                );
            }
            seen.push(clause);
            if sync.collections.is_some() && clause != "WITH" {
                let message = format!(
                    "{clause} is not allowed in the database sync {}: each collection is synced \
                     with SELECT * into a table of its own",
                    sync.name
                );
                return Err(Error::sql(message, at).with_hint(
                    "write a CREATE SYNC of its own for a collection that needs it; the database \
                     sync leaves that collection out by itself",
                ));
            }
            self.parser.advance_token();
            match clause {
                "SELECT" => self.parse_sync_projection(sync)?,
                "WHERE" => {
                    let expr = self.parser.parse_expr().map_err(|error| self.convert(error))?;
                    sync.selection = Some(expr);
                }
                "PARTITION BY" => sync.partition_by = self.parse_partition_by()?,
                _ => {
                    sync.options = SyncOptions::from_raw(self.parse_with_options()?)?;
                    let consistent = sync.options.given.contains(&SyncOption::Consistent);
                    if consistent && sync.collections.is_none() {
                        let message = format!(
                            "consistent applies to a database sync, and {} syncs one collection",
                            sync.name
                        );
                        return Err(Error::sql(message, at).with_hint(
                            "a collection sync's table is always exact at its commits; write \
                             FROM mongo.<database>.* to commit a database's tables together",
                        ));
                    }
                }
            }
        }
        match self.parser.peek_token_ref().token {
            Token::SemiColon | Token::EOF => Ok(()),
            _ => Err(self.expected(&format!(
                "SELECT, WHERE, PARTITION BY, WITH or the end of SYNC {}",
                sync.name
            ))),
        }
    }

    /// The `SELECT` list (no `FROM`), and its text as written.
    fn parse_sync_projection(&mut self, sync: &mut CreateSync) -> Result<()> {
        let start = self.parser.peek_token_ref().span.start;
        let mut items = self.parser.parse_projection().map_err(|error| self.convert(error))?;
        self.unalias_partition(&mut items);
        if self.peek_words::<1>()[0] == "FROM" {
            let message = format!("unexpected FROM in the SELECT of SYNC {}", sync.name);
            return Err(Error::sql(message, self.peek_location()).with_hint(
                "the source is given before INTO: CREATE SYNC name FROM src INTO dst SELECT ...",
            ));
        }
        sync.projection_text = Some(self.text_from(start));
        sync.projection = Some(items);
        Ok(())
    }

    /// sqlparser reads `SELECT a PARTITION BY ...` as `a AS PARTITION`: give the word back.
    fn unalias_partition(&mut self, items: &mut [SelectItem]) {
        let Some(SelectItem::ExprWithAlias { expr, alias }) = items.last() else { return };
        let implicit = !matches!(self.token_before_current(), Token::Word(word)
            if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("AS"));
        if alias.quote_style.is_none()
            && alias.value.eq_ignore_ascii_case("PARTITION")
            && self.peek_words::<1>()[0] == "BY"
            && implicit
        {
            let expr = expr.clone();
            self.parser.prev_token();
            if let Some(last) = items.last_mut() {
                *last = SelectItem::UnnamedExpr(expr);
            }
        }
    }

    /// `PARTITION BY field, ...` from just after `PARTITION`.
    fn parse_partition_by(&mut self) -> Result<Vec<PartitionField>> {
        self.expect_word("BY", "after PARTITION")?;
        let mut fields = vec![self.parse_partition_field()?];
        while self.parser.consume_token(&Token::Comma) {
            fields.push(self.parse_partition_field()?);
        }
        Ok(fields)
    }

    /// `c`, `identity(c)`, `year(c)`, `month(c)`, `day(c)`, `hour(c)`, `bucket(n, c)` or
    /// `truncate(w, c)`.
    fn parse_partition_field(&mut self) -> Result<PartitionField> {
        let at = self.peek_location();
        let word = self.parse_ident("a column or a transform like day(column) in PARTITION BY")?;
        if !self.parser.consume_token(&Token::LParen) {
            return Ok(PartitionField { transform: Transform::Identity, column: word });
        }
        let name = word.value.to_ascii_lowercase();
        let transform = match name.as_str() {
            "identity" => Transform::Identity,
            "year" => Transform::Year,
            "month" => Transform::Month,
            "day" => Transform::Day,
            "hour" => Transform::Hour,
            "bucket" => Transform::Bucket(self.parse_transform_width(BUCKET_COUNT)?),
            "truncate" => Transform::Truncate(self.parse_transform_width(TRUNCATE_WIDTH)?),
            _ => {
                let error = Error::sql(format!("unknown partition transform `{name}`"), at);
                return Err(match closest(&name, &Transform::NAMES) {
                    Some(close) => {
                        error.with_hint(format!("did you mean `{close}`? ({TRANSFORMS})"))
                    }
                    None => error.with_hint(format!("valid transforms: {TRANSFORMS}")),
                });
            }
        };
        let column = self.parse_ident(&format!("a column in {name}(...)"))?;
        self.expect_token(&Token::RParen, &format!(") after the column of {name}(...)"))?;
        Ok(PartitionField { transform, column })
    }

    /// The `n, ` of `bucket(n, c)` or the `w, ` of `truncate(w, c)`.
    fn parse_transform_width(&mut self, what: &str) -> Result<u32> {
        let example = if what == TRUNCATE_WIDTH { "truncate(10, name)" } else { "bucket(16, id)" };
        let at = self.peek_location();
        let Token::Number(text, _) = &self.parser.peek_token_ref().token else {
            return Err(self.expected(what).with_hint(format!("e.g. {example}")));
        };
        let width = match text.parse::<u32>() {
            Ok(width) if width > 0 => width,
            _ => {
                let message = format!("{what} must be a positive integer, found {text}");
                return Err(Error::sql(message, at).with_hint(format!("e.g. {example}")));
            }
        };
        self.parser.advance_token();
        self.expect_token(&Token::Comma, &format!(", and a column after {width}"))?;
        Ok(width)
    }

    /// An option key: `name`, `"any text"`, or names joined by `.` or `-` (`s3.endpoint`);
    /// lower-cased.
    pub(crate) fn parse_option_key(&mut self) -> Result<String> {
        let mut key = self.parse_ident("an option name")?.value;
        loop {
            let separator = match self.parser.peek_token_ref().token {
                Token::Period => '.',
                Token::Minus => '-',
                _ => return Ok(key.to_lowercase()),
            };
            self.parser.advance_token();
            key.push(separator);
            key.push_str(&self.parse_ident(&format!("the rest of the option name {key}"))?.value);
        }
    }

    /// An option value (a string literal or a number) for `key` at `key_at`.
    pub(crate) fn parse_option_value(
        &mut self,
        key: String,
        key_at: crate::Location,
    ) -> Result<RawOption> {
        let value_at = self.peek_location();
        let value = match &self.parser.peek_token_ref().token {
            Token::SingleQuotedString(text) => OptionValue::String(text.clone()),
            Token::Number(text, _) => OptionValue::Number(text.clone()),
            Token::Word(word)
                if word.quote_style.is_none()
                    && ["true", "false"].contains(&word.value.to_ascii_lowercase().as_str()) =>
            {
                OptionValue::Number(word.value.to_ascii_lowercase())
            }
            token => {
                let error = self.expected(&format!("a string or a number as the value of {key}"));
                return Err(match token {
                    Token::Word(word) => error.with_hint(format!("quote it: '{}'", word.value)),
                    _ => error,
                });
            }
        };
        self.parser.advance_token();
        Ok(RawOption { key, key_at, value, value_at })
    }
}
