"""The TFLite converter run quietly: its log lines and deprecation warnings are kept off the console, and a failed
conversion is one error line (the converter's own last error line), not hundreds of lines of MLIR dump."""

from __future__ import annotations

import re
import warnings

from fer_keras.errors import ModelError, stderr_captured


def convert_quietly(converter, what: str) -> bytes:
    """`converter.convert()` (a `tf.lite.TFLiteConverter`) with its output captured.

    Raises:
        ModelError: naming `what` (the model being converted) and the converter's reason, in one line.
    """
    with warnings.catch_warnings(), stderr_captured() as log:
        warnings.simplefilter("ignore")
        try:
            return converter.convert()
        except Exception as e:  # noqa: BLE001 - the converter raises several kinds; all become one line
            log.seek(0)
            text = log.read().decode("utf-8", "replace") + "\n" + str(e)
            errors = [ln.strip() for ln in text.splitlines() if re.search(r"\berror\b", ln, re.I) and ln.strip()]
            reason = (errors[-1] if errors else (str(e).strip().splitlines() or [type(e).__name__])[-1])[:300]
            raise ModelError(f"{what}: TFLite conversion failed ({reason})") from None
