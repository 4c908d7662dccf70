"""DynamoDBStore's table plumbing: one call with botocore's errors translated at the
boundary, retries of throttled batches, the table's creation, gets, queries and batch
writes under a deadline (see ``_dynamodb``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import (
    CacheClosedError,
    ConfigurationError,
    StoreError,
    StoreUnavailableError,
)
from ._dynamodb_codec import (
    BATCH_GET,
    BATCH_WRITE,
    RETRYABLE,
    Item,
    Key,
    attr_s,
    item_key,
)

_T = TypeVar("_T")


class Table:
    """The table calls :class:`~semcache._store._dynamodb.DynamoDBStore` builds on
    (it sets these attributes)."""

    table_name: str
    _client: Any
    _botocore_errors: Any
    _closed: bool

    # -- plumbing ---------------------------------------------------------------------
    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run one DynamoDB call, translating botocore's errors at the boundary."""
        if self._closed:
            raise CacheClosedError("store is closed")
        try:
            return fn()
        except self._botocore_errors.BotoCoreError as exc:
            raise self._translate(exc) from exc
        except self._botocore_errors.ClientError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> StoreError:
        errors = self._botocore_errors
        if isinstance(exc, errors.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in RETRYABLE:
                return StoreUnavailableError(f"DynamoDB is unavailable ({code}): {exc}")
            if code == "ResourceNotFoundException":
                return StoreError(f"DynamoDB table {self.table_name!r} is missing: {exc}")
            return StoreError(f"DynamoDB failed: {exc}")
        if isinstance(exc, (errors.ConnectionError, errors.HTTPClientError)):
            return StoreUnavailableError(f"DynamoDB is unreachable: {exc}")
        return StoreError(f"DynamoDB failed: {exc}")

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("store is closed")

    def _is_conditional_failure(self, exc: BaseException) -> bool:
        cause = exc.__cause__
        return (
            isinstance(cause, self._botocore_errors.ClientError)
            and cause.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
        )

    def _open_table(self, create: bool) -> None:
        errors = self._botocore_errors
        try:
            desc = self._client.describe_table(TableName=self.table_name)["Table"]
        except errors.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise self._translate(exc) from exc
            if not create:
                raise ConfigurationError(
                    f"DynamoDB table {self.table_name!r} does not exist; pass create=True "
                    "or create it with string keys pk (HASH) and sk (RANGE)"
                ) from exc
            desc = self._create_table()
        except errors.BotoCoreError as exc:
            raise self._translate(exc) from exc
        schema = {(k["AttributeName"], k["KeyType"]) for k in desc["KeySchema"]}
        types = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
        if (
            schema != {("pk", "HASH"), ("sk", "RANGE")}
            or types.get("pk") != "S"
            or (types.get("sk") != "S")
        ):
            raise ConfigurationError(
                f"DynamoDB table {self.table_name!r} must have string keys pk (HASH) and "
                f"sk (RANGE); it has {sorted(schema)}"
            )

    def _create_table(self) -> dict[str, Any]:
        errors = self._botocore_errors
        try:
            self._call(
                lambda: self._client.create_table(
                    TableName=self.table_name,
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
            )
        except StoreError as exc:  # another process created it first
            cause = exc.__cause__
            if not (
                isinstance(cause, errors.ClientError)
                and cause.response.get("Error", {}).get("Code") == "ResourceInUseException"
            ):
                raise
        deadline = time.monotonic() + 120
        while True:
            desc: dict[str, Any] = self._call(
                lambda: self._client.describe_table(TableName=self.table_name)
            )["Table"]
            if desc["TableStatus"] == "ACTIVE":
                return desc
            if time.monotonic() > deadline:
                raise StoreUnavailableError(f"table {self.table_name!r} is not ACTIVE after 120 s")
            time.sleep(0.02)

    def _get(self, key: Key, projection: Sequence[str] | None = None) -> Item | None:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": item_key(*key),
            "ConsistentRead": True,
        }
        if projection:
            kwargs["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(projection)))
            kwargs["ExpressionAttributeNames"] = {f"#a{i}": n for i, n in enumerate(projection)}
        got = self._call(lambda: self._client.get_item(**kwargs))
        item: Item | None = got.get("Item")
        return item

    def _batch_get(self, keys: Sequence[Key]) -> dict[Key, Item | None]:
        """Strongly consistent reads of ``keys``: ``key -> item`` (None if absent)."""
        self._check_open()
        out: dict[Key, Item | None] = dict.fromkeys(keys)
        unique = list(dict.fromkeys(keys))
        for lo in range(0, len(unique), BATCH_GET):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [item_key(*k) for k in unique[lo : lo + BATCH_GET]],
                    "ConsistentRead": True,
                }
            }
            delay = 0.01
            while request:
                got = self._call(lambda r=request: self._client.batch_get_item(RequestItems=r))  # type: ignore[misc]
                for item in got.get("Responses", {}).get(self.table_name, []):
                    out[(item["pk"]["S"], item["sk"]["S"])] = item
                request = got.get("UnprocessedKeys") or {}
                if request:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return out

    def _query(
        self,
        pk: str,
        *,
        after: str | None = None,
        upper: str | None = None,
        projection: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> Iterator[Item]:
        """Items of partition ``pk`` in ascending sort key, ``after < sk <= upper``."""
        names = {"#pk": "pk"}
        values: dict[str, Any] = {":pk": attr_s(pk)}
        cond = "#pk = :pk"
        if after is not None or upper is not None or projection is not None:
            names["#sk"] = "sk"
        if after is not None and upper is not None:
            cond += " AND #sk BETWEEN :lo AND :hi"
            values[":lo"] = attr_s(after + "\x00")
            values[":hi"] = attr_s(upper)
        elif after is not None:
            cond += " AND #sk > :lo"
            values[":lo"] = attr_s(after)
        elif upper is not None:
            cond += " AND #sk <= :hi"
            values[":hi"] = attr_s(upper)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        if projection is not None:
            for i, name in enumerate(projection):
                names[f"#a{i}"] = name
            kwargs["ProjectionExpression"] = ", ".join(
                ["#sk", *(f"#a{i}" for i in range(len(projection)))]
            )
        kwargs["ExpressionAttributeNames"] = names
        if limit is not None:
            kwargs["Limit"] = limit
        while True:
            got = self._call(lambda: self._client.query(**kwargs))
            yield from got.get("Items", [])
            last = got.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def _query_keys(self, pk: str, upper: str | None = None) -> Iterator[str]:
        for item in self._query(pk, upper=upper, projection=(), limit=200):
            yield str(item["sk"]["S"])

    def _batch_write(self, writes: Mapping[Key, Item | None], deadline: float | None) -> None:
        """Apply puts and deletes (idempotent), ``BATCH_WRITE`` per call."""
        requests = [
            {"DeleteRequest": {"Key": item_key(*k)}}
            if item is None
            else {"PutRequest": {"Item": item}}
            for k, item in writes.items()
        ]
        for lo in range(0, len(requests), BATCH_WRITE):
            pending: dict[str, Any] = {self.table_name: requests[lo : lo + BATCH_WRITE]}
            delay = 0.01
            while pending:
                self._check_deadline(deadline)
                got = self._call(
                    lambda p=pending: self._client.batch_write_item(RequestItems=p)  # type: ignore[misc]
                )
                pending = got.get("UnprocessedItems") or {}
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)

    def _check_deadline(self, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise StoreUnavailableError(
                "DynamoDB write took longer than a third of lock_lease; the next writer "
                "completes it from its journal"
            )
