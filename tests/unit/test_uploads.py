"""The upload size guard's refusal: ``413 import_too_large`` with the sizes, worded per upload kind."""

from __future__ import annotations

from core.http.uploads import too_large


def test_a_known_size_is_stated_with_the_limit() -> None:
    exc = too_large(2048, 1000)
    assert (exc.status, exc.code, exc.extra) == (413, "import_too_large", {"size_bytes": 2048, "max_bytes": 1000})
    assert exc.en == "The upload is 2048 bytes; at most 1000 bytes can be imported at once — split the file"
    assert exc.zh == "上传内容为 2048 字节，单次最多导入 1000 字节，请拆分文件"


def test_a_recipient_file_is_uploaded_not_imported() -> None:
    exc = too_large(2048, 1000, action="upload")
    assert exc.en == "The upload is 2048 bytes; at most 1000 bytes can be uploaded at once — split the file"
    assert exc.zh == "上传内容为 2048 字节，单次最多上传 1000 字节，请拆分文件"


def test_without_the_size_only_the_limit_is_said() -> None:
    exc = too_large(1500, 1000, with_size=False)
    assert (exc.status, exc.code, exc.extra) == (413, "import_too_large", {"size_bytes": 1500, "max_bytes": 1000})
    assert exc.en == "The upload is larger than 1000 bytes; split the file"
    assert exc.zh == "上传内容超过 1000 字节，请拆分文件"
