"""The words of the web pages and the confirmation email, by language.

Chosen by ``site.language`` ("ja", "ja-JP", "en-US"), falling back to English
word by word, so a site's own templates may use these or their own text.

Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["LABELS", "labels_for"]

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "subscribe_title": "Subscribe to {site}",
        "subscribe_intro": "Get new posts by email. We send a link to confirm first.",
        "email": "Email address",
        "name": "Name (optional)",
        "categories": "Categories",
        "categories_hint": "Leave every box unchecked to receive every post.",
        "subscribe_button": "Subscribe",
        "check_inbox_title": "Check your inbox",
        "check_inbox": (
            "If {email} can receive our digest, a message with a confirmation link is on"
            " its way. Nothing is sent until you confirm."
        ),
        "confirm_title": "Confirm your subscription",
        "confirm_intro": "Send the digest of {site} to {email}?",
        "confirm_button": "Yes, subscribe me",
        "confirmed_title": "You are subscribed",
        "confirmed": "{email} will receive the digest of {site}.",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_intro": "Stop sending the digest of {site} to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed": "{email} will receive no more digests from {site}.",
        "changed_mind": "Changed your mind?",
        "preferences_title": "Your subscription",
        "preferences_intro": "Choose what {site} sends to {email}.",
        "preferences_inactive": "You are not receiving the digest at the moment.",
        "save_button": "Save",
        "resume_button": "Save and receive the digest",
        "leave_button": "Unsubscribe from everything",
        "saved": "Your choices are saved.",
        "manage_preferences": "Manage your subscription",
        "invalid_link_title": "This link is not valid",
        "invalid_link": (
            "The link may have been cut short or changed. Open it again from the email,"
            " or copy the whole address into your browser."
        ),
        "not_found_title": "Not found",
        "not_found": "There is nothing at this address.",
        "gone_title": "Not on the list",
        "gone": "This address is no longer on the list. You may subscribe again.",
        "expired_title": "Please try again",
        "expired": (
            "This form could not be accepted: it is too old or came from another site."
            " Open the page again and send it once more."
        ),
        "too_many_title": "Too many requests",
        "too_many": "Please wait a little and try again.",
        "busy_title": "Busy",
        "busy": "The server is busy. Please try again in a few minutes.",
        "error_email": "Please enter an email address such as name@example.com.",
        "error_name": "Please enter a shorter name on one line.",
        "error_categories": "Please choose categories from the list.",
        "back_to_site": "Back to {site}",
        "subscribe_link": "Subscribe",
        "email_subject": "Confirm your subscription to {site}",
        "email_intro": "Someone, probably you, asked to receive the digest of {site} at {email}.",
        "email_action": "Confirm your subscription",
        "email_ignore": "If you did not ask for this, ignore this email: nothing more will come.",
    },
    "ja": {
        "subscribe_title": "{site} を購読する",
        "subscribe_intro": "新しい記事をメールでお届けします。最初に確認用のリンクをお送りします。",
        "email": "メールアドレス",
        "name": "お名前(任意)",
        "categories": "カテゴリー",
        "categories_hint": "何も選ばなければ、すべての記事をお届けします。",
        "subscribe_button": "購読する",
        "check_inbox_title": "メールをご確認ください",
        "check_inbox": (
            "{email} 宛てに確認用のリンクを記載したメールをお送りします。"
            "確認が済むまで、ダイジェストは届きません。"
        ),
        "confirm_title": "購読の確認",
        "confirm_intro": "{site} のダイジェストを {email} に配信しますか?",
        "confirm_button": "はい、購読します",
        "confirmed_title": "購読を受け付けました",
        "confirmed": "{site} のダイジェストを {email} にお届けします。",
        "unsubscribe_title": "配信停止",
        "unsubscribe_intro": "{site} のダイジェストの {email} への配信を停止しますか?",
        "unsubscribe_button": "配信を停止する",
        "unsubscribed_title": "配信を停止しました",
        "unsubscribed": "{site} のダイジェストは {email} にもう届きません。",
        "changed_mind": "気が変わりましたか?",
        "preferences_title": "配信設定",
        "preferences_intro": "{site} から {email} にお届けする内容を選んでください。",
        "preferences_inactive": "現在、ダイジェストは配信されていません。",
        "save_button": "保存する",
        "resume_button": "保存して配信を再開する",
        "leave_button": "すべての配信を停止する",
        "saved": "設定を保存しました。",
        "manage_preferences": "配信設定を変更する",
        "invalid_link_title": "このリンクは無効です",
        "invalid_link": (
            "リンクが途中で切れているか、変更されている可能性があります。"
            "メールからもう一度開くか、アドレス全体をブラウザに貼り付けてください。"
        ),
        "not_found_title": "見つかりません",
        "not_found": "このアドレスには何もありません。",
        "gone_title": "登録がありません",
        "gone": "このメールアドレスは登録されていません。もう一度購読できます。",
        "expired_title": "もう一度お試しください",
        "expired": (
            "フォームの有効期限が切れているか、別のサイトから送信されたため受け付けられませんでした。"
            "ページを開き直して、もう一度送信してください。"
        ),
        "too_many_title": "リクエストが多すぎます",
        "too_many": "しばらく待ってから、もう一度お試しください。",
        "busy_title": "混み合っています",
        "busy": "サーバーが混み合っています。数分後にもう一度お試しください。",
        "error_email": "name@example.com のような形式でメールアドレスを入力してください。",
        "error_name": "お名前は 1 行で、もう少し短く入力してください。",
        "error_categories": "カテゴリーは一覧から選んでください。",
        "back_to_site": "{site} に戻る",
        "subscribe_link": "購読する",
        "email_subject": "{site} の購読確認",
        "email_intro": "{site} のダイジェストを {email} で受け取るお申し込みがありました。",
        "email_action": "購読を確認する",
        "email_ignore": (
            "お心当たりがない場合は、このメールを無視してください。今後メールが届くことはありません。"
        ),
    },
}


def labels_for(language: str) -> dict[str, str]:
    """The pages' words in ``site.language``, each falling back to English."""
    base = language.replace("_", "-").split("-")[0].lower()
    return {**LABELS["en"], **LABELS.get(base, {})}
