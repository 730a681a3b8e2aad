"""Reject reasons point at the real fault, and the run summary counts them by kind (issue 11).

A doubled delimiter or a quote glued to the next token shifts every field after it: the value a kernel then
refuses is a symptom. The reason now says first where the line's shape is off.
"""

from __future__ import annotations

from servicelogs import formats

S3 = formats.get("s3_access")
S3_KEY = S3.key_layouts[0].example
S3_LINE = S3.examples[0].line
ALB = formats.get("alb")
ALB_KEY = ALB.key_layouts[0].example
ALB_LINE = ALB.examples[0].line


def test_a_doubled_space_is_named_where_it_is(convert):
    doubled = S3_LINE.replace(" 192.0.2.3 ", " 192.0.2.3  ", 1)
    out = convert("s3_access", {S3_KEY: f"{S3_LINE}\n{doubled}\n"})
    assert (out.summary.rows, out.summary.rejects) == (1, 1)
    assert out.rejects[0]["reason"] == (
        "two spaces after field 4 (remoteip): field 'httpstatus': 'GET /amzn-s3-demo-bucket1?versioning HTTP/1.1' "
        "is not an integer"
    )


def test_a_glued_quote_is_named_where_it_is(convert):
    glued = ALB_LINE.replace('"-" "-" 0 2018', '"-" "-"0 2018', 1)
    out = convert("alb", {ALB_KEY: f"{ALB_LINE}\n{glued}\n"})
    assert (out.summary.rows, out.summary.rejects) == (1, 1)
    assert out.rejects[0]["reason"].startswith("no space after the quoted field 20 (chosen_cert_arn): ")


def test_the_summary_lists_the_top_reject_reasons_and_the_rejects_table(convert):
    bad_status = [ALB_LINE.replace(" 200 200 34 ", f" 20{i}x 200 34 ", 1) for i in range(3)]
    out = convert("alb", {ALB_KEY: "\n".join([ALB_LINE, *bad_status, "garbage"]) + "\n"})
    s = out.summary
    assert s.reject_reasons == {
        "field 'elb_status_code': … is not an integer": 3,
        "N fields; a line of Application Load Balancer access logs has at least 18 "
        "(an unbalanced quote or a truncated line?)": 1,
    }
    assert s.rejects_table == f"{out.target}/alb_rejects"
    text = s.text()
    assert f"  rejects: 4 in {out.target}/alb_rejects; top reasons:" in text
    assert "    3 × field 'elb_status_code': … is not an integer" in text
