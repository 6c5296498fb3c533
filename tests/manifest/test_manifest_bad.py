"""Validation: every manifest in bad/ raises ManifestError naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ManifestError, ManifestIssue
from pipeline.manifest import load_manifest
from pipeline.manifest._issues import MAX_ISSUES

from ._support import Write

BAD = Path(__file__).parent / "bad"

# file -> substrings that must each appear in one issue, as "<file>:<line>: <field>: <text>".
EXPECTED: dict[str, list[str]] = {
    "syntax.yaml": [
        "syntax.yaml:5: YAML syntax error: while scanning a quoted scalar on line 3 found "
        "unexpected end of stream"
    ],
    "two_documents.yaml": [
        "two_documents.yaml:3: YAML syntax error: expected a single document in the stream on "
        "line 1 but found another document"
    ],
    "not_mapping.yaml": ["not_mapping.yaml:1: a manifest is a mapping"],
    "missing_name.yaml": ["missing_name.yaml:1: name: is required"],
    "bad_name.yaml": ["bad_name.yaml:1: name: 'my batch' is not a valid name"],
    "unknown_top_key.yaml": [
        "unknown_top_key.yaml:2: promts: unknown key (did you mean 'prompts'?)"
    ],
    "unknown_prompt_key.yaml": [
        "unknown_prompt_key.yaml:4: prompts[0].resolutoin: unknown key (did you mean 'resolution'?)"
    ],
    "duplicate_key.yaml": ["duplicate_key.yaml:3: prompts: duplicate key"],
    "wrong_type_n.yaml": ["wrong_type_n.yaml:4: prompts[0].n: expected a whole number, got 'many'"],
    "n_zero.yaml": ["n_zero.yaml:3: defaults.n: must be at least 1, got 0"],
    "n_ten.yaml": ["n_ten.yaml:3: prompts[0].n: must be at most 9, got 10"],
    "n_too_big_for_skills.yaml": [
        "n_too_big_for_skills.yaml:5: prompts[0].n: 5 is not within 1..4 for skills_video"
    ],
    "resolution_unknown.yaml": [
        "resolution_unknown.yaml:7: prompts[3].resolution: '8k' is not one of 1k, 2k, 4k"
    ],
    "sweep_4k_onto_skills.yaml": [
        "sweep_4k_onto_skills.yaml:6: sweep.resolution: '4k' is not one of 1k, 2k for skills_video"
        " (prompt 'cat')"
    ],
    "prompt_4k_on_skills.yaml": [
        "prompt_4k_on_skills.yaml:5: prompts[0].resolution: '4k' is not one of 1k, 2k for skills"
    ],
    "provider_unknown.yaml": [
        "provider_unknown.yaml:3: defaults.provider: 'midjourney' is not one of wavespeed, skills"
    ],
    "aspect_unknown.yaml": ["aspect_unknown.yaml:4: prompts[0].aspect_ratio: '5:4' is not one of"],
    "format_unknown.yaml": [
        "format_unknown.yaml:4: prompts[0].output_format: 'gif' is not one of png, jpeg, webp"
    ],
    "prompt_too_long.yaml": ["prompt_too_long.yaml:3: prompts[0].prompt: is 2501 characters"],
    "prompt_too_long_after_vars.yaml": [
        "prompt_too_long_after_vars.yaml:3: prompts[0].prompt: is 2510 characters (after expanding"
    ],
    "prompt_blank.yaml": ["prompt_blank.yaml:3: prompts[0].prompt: must not be empty"],
    "prompt_null_item.yaml": ["prompt_null_item.yaml:4: prompts[1]: expected a prompt"],
    "prompts_not_a_list.yaml": ["prompts_not_a_list.yaml:2: prompts: expected a list"],
    "too_many_urls.yaml": [
        "too_many_urls.yaml:4: prompts[0].image_urls: has 11 items; at most 10 allowed"
    ],
    "bad_url.yaml": ["bad_url.yaml:4: prompts[0].image_urls[0]: 'ftp://img.test/1.png' is not an"],
    "image_ref_out_of_range.yaml": [
        "image_ref_out_of_range.yaml:3: prompts[0].prompt: @Image3 is out of range: there are 2"
    ],
    "image_ref_without_urls.yaml": [
        "image_ref_without_urls.yaml:3: prompts[0].prompt: @Image1 refers to a reference image, "
        "but image_urls is not set"
    ],
    "image_bare_ref_two_urls.yaml": [
        "image_bare_ref_two_urls.yaml:5: prompts[0].prompt: @Image needs exactly one image_url"
    ],
    "var_undefined.yaml": ["var_undefined.yaml:3: prompts[0].prompt: {style} is not defined"],
    "var_unused.yaml": ["var_unused.yaml:5: prompts[0].vars.mood: var 'mood' is not used"],
    "var_empty.yaml": ["var_empty.yaml:5: prompts[0].vars.mood: must not be empty"],
    "var_named_like_setting.yaml": [
        "var_named_like_setting.yaml:4: prompts[0].vars.provider: 'provider' is a job setting"
    ],
    "stray_brace.yaml": ["stray_brace.yaml:3: prompts[0].prompt: unmatched '{' at character 7"],
    "duplicate_ids.yaml": ["duplicate_ids.yaml:4: prompts[1].id: duplicate id 'cat' (also"],
    "bad_id.yaml": ["bad_id.yaml:3: prompts[0].id: '../etc/passwd' is not a valid id"],
    "sweep_unknown_axis.yaml": ["sweep_unknown_axis.yaml:3: sweep.style: unknown key"],
    "sweep_empty_axis.yaml": ["sweep_empty_axis.yaml:3: sweep.aspect_ratio: must not be empty"],
    "sweep_not_a_list.yaml": ["sweep_not_a_list.yaml:3: sweep.provider: expected a list"],
    "sweep_duplicate_value.yaml": [
        "sweep_duplicate_value.yaml:3: sweep.resolution: duplicate value '1k'"
    ],
    "budget_zero.yaml": [
        "budget_zero.yaml:2: budget.max_usd: must be greater than 0, got 0",
        "budget_zero.yaml:2: budget.max_credits: must be greater than 0, got -5",
    ],
    "limits_not_positive.yaml": [
        "limits_not_positive.yaml:4: providers.wavespeed.requests_per_second: must be greater",
        "limits_not_positive.yaml:5: providers.wavespeed.max_concurrent: must be at least 1",
        "limits_not_positive.yaml:6: providers.wavespeed.job_timeout_s: must be greater than 0",
    ],
    "providers_unknown.yaml": [
        "providers_unknown.yaml:3: providers.wavespeeed: 'wavespeeed' is not one of wavespeed, "
        "skills_video (did you mean 'wavespeed'?)"
    ],
    "base_url_with_api.yaml": [
        "base_url_with_api.yaml:4: providers.wavespeed.base_url: 'https://api.wavespeed.ai/api/v3"
    ],
    "no_prompts.yaml": ["no_prompts.yaml:1: prompts: no prompts"],
    "empty.yaml": ["empty.yaml: the file is empty"],
    "whitespace.yml": ["whitespace.yml: the file is empty"],
    "alias_bomb.yaml": ["alias_bomb.yaml:2: aliases expand to more than 100000 values"],
    "recursive_merge.yaml": ["recursive_merge.yaml:3: nested more than 64 levels deep"],
    "deep_nesting.yaml": ["deep_nesting.yaml:2: nested more than 64 levels deep"],
    "bad_tag.yaml": ["bad_tag.yaml:3: prompts[0]: unsupported tag !!python/object/apply"],
    "control_char.yaml": ["control_char.yaml:2: YAML cannot contain the character U+0007"],
    "yaml_non_utf8.yaml": ["yaml_non_utf8.yaml:3: not UTF-8 text (byte 0xe9"],
    "too_many_jobs.yaml": ["too_many_jobs.yaml:3: prompts[0]: expands to 1,001,000 jobs"],
    "missing_prompts_file.yaml": [
        "missing_prompts_file.yaml:2: prompts_file: file not found: ",
        "no-such-file.csv",
    ],
    "prompts_file_bad_row.yaml": [
        "prompts_file_bad_row.csv:3: provider: 'dalle' is not one of wavespeed, skills_video"
    ],
    "prompts_file_bad_row.csv": ["prompts_file_bad_row.csv:3: provider: 'dalle' is not one of"],
    "csv_no_header.csv": ["csv_no_header.csv:1: a header row is required"],
    "csv_column_count.csv": ["csv_column_count.csv:3: row has 3 cells; the header has 2"],
    "csv_non_utf8.csv": ["csv_non_utf8.csv:3: not UTF-8 text (byte 0xe9 at column 4)"],
    "csv_unknown_column.csv": [
        "csv_unknown_column.csv:1: resolutin: unknown column (did you mean 'resolution'?)"
    ],
    "csv_bad_values.csv": [
        "csv_bad_values.csv:3: resolution: '8k' is not one of 1k, 2k, 4k",
        "csv_bad_values.csv:4: n: 5 is not within 1..4 for skills_video",
    ],
    "csv_bad_quotes.csv": ["csv_bad_quotes.csv:2: CSV error"],
    "notes.txt": ["notes.txt: unsupported file type '.txt'"],
    "multiple_errors.yaml": [
        "multiple_errors.yaml:1: name: 'many errors' is not a valid name",
        "multiple_errors.yaml:8: prompts[0].prompt: @Image2 refers to a reference image",
        "multiple_errors.yaml:10: prompts[1].n: 7 is not within 1..4 for skills_video",
        "multiple_errors.yaml:12: prompts[2].colour: unknown key",
        "multiple_errors.yaml:13: prompts[3].prompt: {missing} is not defined",
    ],
    "multiple_errors_bad_defaults.yaml": [
        "multiple_errors_bad_defaults.yaml:1: name: 'many errors' is not a valid name",
        "multiple_errors_bad_defaults.yaml:3: defaults.resolution: '3k' is not one of 1k, 2k, 4k",
        "multiple_errors_bad_defaults.yaml:8: prompts[0].prompt: {missing} is not defined",
        "multiple_errors_bad_defaults.yaml:12: prompts[2].colour: unknown key",
    ],
}


def _issues(path: str | Path) -> list[ManifestIssue]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.issues, "a ManifestError must list at least one issue"
    return info.value.issues


def test_corpus_is_large_and_fully_covered() -> None:
    """At least 30 bad manifests, and each file in bad/ has expectations."""
    files = sorted(p.name for p in BAD.iterdir())
    assert len(files) >= 30
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_manifest_reports_line_and_field(name: str) -> None:
    """Each expected '<file>:<line>: <field>: <message>' appears among the issues."""
    issues = _issues(BAD / name)
    text = [str(i) for i in issues]
    for expected in EXPECTED[name]:
        assert any(expected in t for t in text), f"{expected!r} not in {text}"
    assert all(i.path.startswith(str(BAD)) for i in issues), "paths are as the user gave them"


def test_missing_file() -> None:
    """A manifest that does not exist is a ManifestError naming it."""
    (issue,) = _issues(BAD / "does-not-exist.yaml")
    assert str(issue) == f"{BAD / 'does-not-exist.yaml'}: file not found"


def test_directory_is_not_a_manifest(write: Write) -> None:
    """A folder named like a manifest is refused, not crashed on."""
    folder = Path(write("x.yaml/inner.txt", "")).parent
    (issue,) = _issues(folder)
    assert "not a regular file" in issue.message


def test_issue_cap(write: Write) -> None:
    """Hundreds of problems are cut at the cap with a final note."""
    rows = "".join(f"r{i},a cat,dalle\n" for i in range(300))
    issues = _issues(write("many.csv", "id,prompt,provider\n" + rows))
    assert len(issues) == MAX_ISSUES
    assert issues[-1].message.startswith("too many problems")
    assert issues[0].line == 2
    assert issues[0].field == "provider"


def test_issues_are_sorted_by_line(write: Write) -> None:
    """Issues found in different stages are reported in file and line order."""
    issues = _issues(BAD / "multiple_errors.yaml")
    lines = [i.line or 0 for i in issues]
    assert lines == sorted(lines)


def test_large_plain_document_is_not_an_alias_bomb(write: Write) -> None:
    """Only values repeated through aliases count towards the alias limit, not size."""
    path = write("big.yaml", "name: big\nprompts: [a]\nextra: [" + "0," * 120_000 + "0]\n")
    (issue,) = _issues(path)
    assert (issue.line, issue.field, issue.message) == (3, "extra", "unknown key")
