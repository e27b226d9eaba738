//! PubMed / MEDLINE XML (`PubmedArticleSet`, the format of NLM's baseline and update files).
//!
//! The stream is first cut into top-level records (`PubmedArticle`, `PubmedBookArticle`,
//! `DeleteCitation`) by a byte scanner, then each record is parsed on its own with quick-xml.
//! A malformed record therefore costs only that record: under `on_bad_record = "skip"` the
//! reader resumes at the next record instead of losing the rest of a 30,000-record file.
//! A document is the citation's PMID (id) and its `ArticleTitle` followed by every
//! `Abstract/AbstractText` section, joined with `field_separator` (inline markup such as
//! `<i>` or `<sup>` keeps its text). Records without an abstract are dropped and counted.

use std::io::BufRead;
use std::sync::Arc;

use quick_xml::events::Event;

use super::medline_records::{RawRecord, RecordKind, RecordSplitter};
use super::medline_versions::FileVerdicts;
use super::{BadRecord, Document, DropReason, Record, RecordReader};
use crate::error::BadRecordKind;

/// The fields of an article record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Article {
    pub pmid: String,
    pub title: String,
    pub abstract_sections: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    PubmedArticle,
    MedlineCitation,
    Pmid,
    Article,
    ArticleTitle,
    Abstract,
    AbstractText,
    Other,
}

fn tag_of(name: &[u8]) -> Tag {
    match name {
        b"PubmedArticle" => Tag::PubmedArticle,
        b"MedlineCitation" => Tag::MedlineCitation,
        b"PMID" => Tag::Pmid,
        b"Article" => Tag::Article,
        b"ArticleTitle" => Tag::ArticleTitle,
        b"Abstract" => Tag::Abstract,
        b"AbstractText" => Tag::AbstractText,
        _ => Tag::Other,
    }
}

/// Where text goes, by the element path it appears under.
fn target(stack: &[Tag]) -> Option<Tag> {
    use Tag::*;
    match stack {
        [PubmedArticle, MedlineCitation, Pmid] => Some(Pmid),
        [PubmedArticle, MedlineCitation, Article, ArticleTitle, ..] => Some(ArticleTitle),
        [
            PubmedArticle,
            MedlineCitation,
            Article,
            Abstract,
            AbstractText,
            ..,
        ] => Some(AbstractText),
        _ => None,
    }
}

/// The text of a predefined entity (`&amp;`...) or character reference; other entities
/// are kept literally (PubMed's DTD declares none).
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = reference.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c.to_string());
    }
    let name = reference.decode().map_err(|e| e.to_string())?;
    Ok(match name.as_ref() {
        "lt" => "<".into(),
        "gt" => ">".into(),
        "amp" => "&".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        other => format!("&{other};"),
    })
}

/// Parses one `PubmedArticle` record.
pub fn parse_article(xml: &str) -> Result<Article, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Tag> = Vec::new();
    let mut article = Article::default();
    let mut section = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} (at byte {} of the record)", reader.error_position()))?;
        let text: std::borrow::Cow<'_, str> = match &event {
            Event::Start(e) => {
                stack.push(tag_of(e.name().as_ref()));
                continue;
            }
            Event::End(_) => {
                if target(&stack) == Some(Tag::AbstractText)
                    && stack.last() == Some(&Tag::AbstractText)
                    && stack.len() == 5
                {
                    let s = section.trim();
                    if !s.is_empty() {
                        article.abstract_sections.push(s.to_string());
                    }
                    section.clear();
                }
                stack.pop();
                continue;
            }
            Event::Text(t) => t.decode().map_err(|e| e.to_string())?,
            Event::CData(t) => t.decode().map_err(|e| e.to_string())?,
            Event::GeneralRef(r) => resolve_reference(r)?.into(),
            Event::Eof => break,
            _ => continue,
        };
        match target(&stack) {
            Some(Tag::Pmid) => article.pmid.push_str(&text),
            Some(Tag::ArticleTitle) => article.title.push_str(&text),
            Some(Tag::AbstractText) => section.push_str(&text),
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed elements at the end of the record".into());
    }
    article.pmid = article.pmid.trim().to_string();
    if article.pmid.is_empty() || !article.pmid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "no numeric MedlineCitation/PMID (found `{}`)",
            article.pmid
        ));
    }
    article.title = article.title.trim().to_string();
    Ok(article)
}

/// Reads the documents of one MEDLINE file, applying the version verdicts of
/// [`super::medline_versions::resolve_versions`] (superseded and deleted records dropped).
pub struct MedlineReader {
    records: RecordSplitter,
    separator: String,
    verdicts: Option<Arc<FileVerdicts>>,
    articles: u64,
}

impl MedlineReader {
    pub fn new(
        stream: Box<dyn BufRead + Send>,
        separator: String,
        verdicts: Option<Arc<FileVerdicts>>,
    ) -> Self {
        Self {
            records: RecordSplitter::new(stream),
            separator,
            verdicts,
            articles: 0,
        }
    }

    fn article(&self, raw: &RawRecord) -> Result<Record, BadRecord> {
        let xml = std::str::from_utf8(&raw.bytes).map_err(|e| {
            BadRecord::new(
                BadRecordKind::InvalidUtf8,
                raw.location(),
                format!("invalid UTF-8: {e}"),
            )
        })?;
        let article = parse_article(xml).map_err(|message| {
            BadRecord::new(BadRecordKind::MalformedXml, raw.location(), message)
        })?;
        if article.abstract_sections.is_empty() {
            return Ok(Record::Dropped(DropReason::NoAbstract));
        }
        let mut text = article.title;
        for section in &article.abstract_sections {
            if !text.is_empty() {
                text.push_str(&self.separator);
            }
            text.push_str(section);
        }
        Ok(Record::Doc(Document {
            id: article.pmid,
            text,
        }))
    }
}

impl RecordReader for MedlineReader {
    fn next_record(&mut self) -> Option<Result<Record, BadRecord>> {
        loop {
            let raw = match self.records.next()? {
                Ok(raw) => raw,
                Err(bad) => return Some(Err(bad)),
            };
            match raw.kind {
                RecordKind::Delete => continue,
                RecordKind::Book => return Some(Ok(Record::Dropped(DropReason::BookArticle))),
                RecordKind::Article => {
                    let ordinal = self.articles;
                    self.articles += 1;
                    if let Some(reason) = self.verdicts.as_ref().and_then(|v| v.verdict(ordinal)) {
                        return Some(Ok(Record::Dropped(reason)));
                    }
                    return Some(self.article(&raw));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::medline_records::{all_pmids, first_pmid};

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">
<PubmedArticleSet>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">101</PMID>
    <Article PubModel="Print">
      <ArticleTitle>Aspirin &amp; <i>in vitro</i> platelets.</ArticleTitle>
      <Abstract>
        <AbstractText Label="BACKGROUND">Aspirin inhibits COX&#8209;1.</AbstractText>
        <AbstractText Label="RESULTS">It works at 10<sup>-6</sup> M.</AbstractText>
      </Abstract>
    </Article>
    <CommentsCorrectionsList><CommentsCorrections><PMID Version="1">999</PMID></CommentsCorrections></CommentsCorrectionsList>
  </MedlineCitation>
</PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">102</PMID><Article><ArticleTitle>No abstract here.</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<PubmedBookArticle><BookDocument><PMID Version="1">103</PMID></BookDocument></PubmedBookArticle>
<DeleteCitation><PMID Version="1">50</PMID><PMID Version="1">51</PMID></DeleteCitation>
</PubmedArticleSet>
"#;

    fn read_all(xml: &[u8]) -> Vec<String> {
        let mut r = MedlineReader::new(
            Box::new(std::io::Cursor::new(xml.to_vec())),
            " ".into(),
            None,
        );
        std::iter::from_fn(|| r.next_record())
            .map(|x| match x {
                Ok(Record::Doc(d)) => format!("{}={}", d.id, d.text),
                Ok(Record::Dropped(r)) => r.as_str().to_string(),
                Err(b) => format!("{} {}", b.kind.as_str(), b.location),
            })
            .collect()
    }

    #[test]
    fn reads_title_and_all_abstract_sections() {
        assert_eq!(
            read_all(SAMPLE.as_bytes()),
            [
                "101=Aspirin & in vitro platelets. Aspirin inhibits COX\u{2011}1. It works at 10-6 M.",
                "no_abstract",
                "book_article"
            ]
        );
    }

    #[test]
    fn pmids_are_found_cheaply() {
        let start = SAMPLE.find("<PubmedArticle>").unwrap();
        assert_eq!(first_pmid(&SAMPLE.as_bytes()[start..]), Some(101));
        let del = SAMPLE.find("<DeleteCitation>").unwrap();
        assert_eq!(all_pmids(&SAMPLE.as_bytes()[del..]), [50, 51]);
    }

    #[test]
    fn a_malformed_record_costs_only_itself() {
        let xml = SAMPLE.replace(
            "<ArticleTitle>No abstract here.</ArticleTitle>",
            "<ArticleTitle>Bad</Title>",
        );
        assert_eq!(
            read_all(xml.as_bytes()),
            [
                "101=Aspirin & in vitro platelets. Aspirin inhibits COX\u{2011}1. It works at 10-6 M.",
                "malformed_xml record 2 (line 17)",
                "book_article"
            ]
        );
        let truncated = &SAMPLE.as_bytes()[..SAMPLE.find("No abstract").unwrap()];
        let got = read_all(truncated);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], "malformed_xml record 2 (line 17)");
    }

    #[test]
    fn the_splitter_handles_records_across_chunk_borders() {
        // Many records: the buffer refills in the middle of records and tags.
        let mut xml = String::from("<PubmedArticleSet>\n");
        for i in 0..3000 {
            xml.push_str(&format!(
                "<PubmedArticle><MedlineCitation><PMID>{i}</PMID><Article><ArticleTitle>T{i}</ArticleTitle><Abstract><AbstractText>{}</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>\n",
                "word ".repeat(i % 50 + 1)
            ));
        }
        xml.push_str("</PubmedArticleSet>\n");
        let got = read_all(xml.as_bytes());
        assert_eq!(got.len(), 3000);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, d)| d.starts_with(&format!("{i}=T{i} word")))
        );
    }
}
