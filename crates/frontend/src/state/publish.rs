use herald_protocol::api::PublishRequest;
use herald_protocol::names::{DEFAULT_EVENT_TYPE, validate_publishable_event_type, validate_topic};
use serde_json::value::RawValue;

/// Splits a topics field on commas and whitespace, dropping empties and repeats.
pub fn parse_topics(text: &str) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for topic in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        if !topics.iter().any(|known| known == topic) {
            topics.push(topic.to_owned());
        }
    }
    topics
}

/// The publish form's fields as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishForm {
    pub topics: String,
    pub kind: String,
    pub data: String,
}

impl PublishForm {
    /// The request the form describes, or every problem found, each a sentence.
    pub fn validate(&self) -> Result<PublishRequest, Vec<String>> {
        let mut problems = Vec::new();
        let topics = parse_topics(&self.topics);
        if topics.is_empty() {
            problems.push("Name at least one topic.".to_owned());
        }
        for topic in &topics {
            if let Err(err) = validate_topic(topic) {
                problems.push(format!("Topic {topic:?}: {err}."));
            }
        }
        let kind = self.kind.trim();
        let kind = if kind.is_empty() {
            DEFAULT_EVENT_TYPE
        } else {
            kind
        };
        if let Err(err) = validate_publishable_event_type(kind) {
            problems.push(format!("Type: {err}."));
        }
        let data_text = if self.data.trim().is_empty() {
            "null"
        } else {
            self.data.trim()
        };
        let data = match RawValue::from_string(data_text.to_owned()) {
            Ok(data) => Some(data),
            Err(err) => {
                problems.push(format!("Data is not valid JSON: {err}."));
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PublishRequest {
            topic: None,
            topics: Some(topics),
            kind: Some(kind.to_owned()),
            data,
            private: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_split_on_commas_and_spaces_once_each() {
        assert_eq!(parse_topics(" a, b  rooms/1,a "), ["a", "b", "rooms/1"]);
        assert!(parse_topics(" , ").is_empty());
    }

    #[test]
    fn a_valid_form_becomes_a_request() {
        let form = PublishForm {
            topics: "demo".into(),
            kind: "".into(),
            data: r#"{"n": 1}"#.into(),
        };
        let request = form.validate().unwrap();
        assert_eq!(request.topics.as_deref(), Some(&["demo".to_owned()][..]));
        assert_eq!(request.kind.as_deref(), Some("message"));
        assert_eq!(request.data.unwrap().get(), r#"{"n": 1}"#);
    }

    #[test]
    fn every_problem_is_reported() {
        let form = PublishForm {
            topics: "".into(),
            kind: "herald.x".into(),
            data: "{oops".into(),
        };
        let problems = form.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[2].starts_with("Data is not valid JSON"),
            "{problems:?}"
        );
    }
}
