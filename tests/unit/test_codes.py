from switch.iso.codes import RESULT_TO_FIELD39, ResultCode, field39_for, result_for_field39


def test_known_codes():
    assert result_for_field39("00") is ResultCode.APPROVED
    assert result_for_field39("51") is ResultCode.INSUFFICIENT_FUNDS
    assert result_for_field39("N7") is ResultCode.INCORRECT_CVC
    assert result_for_field39("82") is ResultCode.INCORRECT_CVC


def test_unknown_codes_never_approve():
    assert result_for_field39("Z9") is ResultCode.DO_NOT_HONOR
    assert result_for_field39("99") is ResultCode.PROCESSING_ERROR
    assert result_for_field39(None) is ResultCode.PROCESSING_ERROR


def test_inverse_round_trips():
    for result in ResultCode:
        code = field39_for(result)
        if result in RESULT_TO_FIELD39:
            assert result_for_field39(code) is result
        else:
            assert len(code) == 2 and result_for_field39(code) is not ResultCode.APPROVED
