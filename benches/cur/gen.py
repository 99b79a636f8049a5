#!/usr/bin/env python3
"""Generates a CUR-shaped report for the cost-report benchmark: the legacy column layout of
the koku fixture (131 columns), ~800-byte rows, a month of hourly line items over 40 accounts,
60 services and 16 regions, costs with 10 decimals (credits and refunds negative, some empty),
descriptions quoted because they hold commas.

    python3 benches/cur/gen.py OUT.csv SIZE_MB
"""
import csv
import random
import sys

FIXTURE = "tests/fixtures/cur/legacy-cur/koku.test_cur.csv"


def main():
    out, size_mb = sys.argv[1], float(sys.argv[2])
    with open(FIXTURE, newline="") as f:
        rows = list(csv.reader(f))
    header, templates = rows[0], rows[1:]
    # The fixture has product/location and no product/region: the region takes its place.
    header = ["product/region" if h == "product/location" else h for h in header]
    col = {name: i for i, name in enumerate(header)}
    rnd = random.Random(42)
    accounts = [f"{rnd.randrange(10**11, 10**12)}" for _ in range(40)]
    services = [f"Amazon{n}" for n in ("EC2", "S3", "RDS", "DynamoDB", "Lambda", "CloudWatch", "SQS", "SNS", "ECS", "EKS")] + [f"AWSService{i}" for i in range(50)]
    regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1", "eu-north-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ap-south-1", "sa-east-1", "ca-central-1", "me-south-1", ""]
    types = ["Usage"] * 40 + ["Tax", "Credit", "Refund", "DiscountedUsage", "SavingsPlanNegation"]
    limit = int(size_mb * 1024 * 1024)
    written = 0
    n = 0
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        while written < limit:
            r = list(templates[n % len(templates)])
            # The fixture's rows are one field short of its header; a real export's are not.
            r += [""] * (len(header) - len(r))
            day = 1 + (n // 997) % 30
            hour = n % 24
            kind = types[n % len(types)]
            cost = rnd.random() * 3
            if kind in ("Credit", "Refund", "SavingsPlanNegation"):
                cost = -cost
            r[col["identity/LineItemId"]] = f"{n:040x}"
            r[col["lineItem/UsageStartDate"]] = f"2024-06-{day:02d}T{hour:02d}:00:00Z"
            r[col["lineItem/UsageEndDate"]] = f"2024-06-{day:02d}T{hour:02d}:59:59Z"
            r[col["lineItem/UsageAccountId"]] = accounts[n % len(accounts)]
            r[col["bill/PayerAccountId"]] = accounts[0]
            r[col["lineItem/ProductCode"]] = services[(n * 7) % len(services)]
            r[col["product/region"]] = regions[(n * 3) % len(regions)]
            r[col["lineItem/LineItemType"]] = kind
            r[col["lineItem/UnblendedCost"]] = "" if n % 101 == 0 else f"{cost:.10f}"
            r[col["lineItem/LineItemDescription"]] = f"${cost:.4f} per On Demand Linux m5.large Instance Hour, {regions[n % len(regions)]}, line {n}"
            r[col["lineItem/ResourceId"]] = f"i-{n:017x}"
            w.writerow(r)
            written = f.tell()
            n += 1
    print(f"{out}: {n} rows, {written / 1e6:.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
