// Yobidashi webhook for Zabbix 6.0+ (Duktape, ES5). Posts the event to Yobidashi's ingest and
// throws on anything but 2xx, so that Zabbix retries the alert and shows the reason in its log.
var Yobidashi = {
    // Zabbix leaves a macro it cannot resolve as literal text, or writes *UNKNOWN*.
    unresolved: /^\{[?$#]?[A-Z][A-Z0-9_.]*(\[[^\]]*\])?(:[^}]*)?\}$/,
    reserved: { URL: true, token: true, HTTPProxy: true, incident_page: true },

    clean: function (value) {
        if (typeof value !== 'string') {
            return value;
        }
        if (value === '*UNKNOWN*' || Yobidashi.unresolved.test(value)) {
            return null;
        }
        return value;
    },

    body: function (params) {
        var body = {}, key;
        for (key in params) {
            if (params.hasOwnProperty(key) && !Yobidashi.reserved[key]) {
                body[key] = Yobidashi.clean(params[key]);
            }
        }
        if (typeof body.event_tags === 'string') {
            try {
                body.event_tags = JSON.parse(body.event_tags);
            }
            catch (error) {
                body.event_tags = [];
            }
        }
        body.media_type_version = '1';
        return body;
    },

    reason: function (response) {
        try {
            var parsed = JSON.parse(response);
            if (parsed && typeof parsed.message === 'string') {
                return parsed.message;
            }
        }
        catch (error) {
            // not JSON: fall through to the raw text
        }
        return String(response || '').substring(0, 200);
    },

    send: function (params) {
        if (typeof params.URL !== 'string' || !/^https?:\/\/\S+$/.test(params.URL)) {
            throw 'parameter "URL" must be the ingest URL, e.g. https://yobidashi.example.com/v1/zabbix';
        }
        if (typeof params.token !== 'string' || params.token === '' || Yobidashi.clean(params.token) === null) {
            throw 'parameter "token" is empty: set it to the ingest service\'s INGEST_TOKEN';
        }
        if (params.event_source !== undefined && params.event_source !== '0') {
            throw 'only trigger events are supported (event source ' + params.event_source + ')';
        }
        var request = new HttpRequest();
        request.addHeader('Content-Type: application/json');
        request.addHeader('Authorization: Bearer ' + params.token);
        if (typeof params.HTTPProxy === 'string' && params.HTTPProxy.trim() !== '') {
            request.setProxy(params.HTTPProxy);
        }
        var response = request.post(params.URL, JSON.stringify(Yobidashi.body(params)));
        var status = request.getStatus();
        if (status < 200 || status >= 300) {
            throw 'ingest answered HTTP ' + status + ': ' + Yobidashi.reason(response);
        }
        return JSON.stringify({ tags: Yobidashi.tags(params, response) });
    },

    // With "Process tags" on, the problem gets these tags; the event menu's "Yobidashi" entry
    // opens the URL tag. Only a problem notification tags its problem.
    tags: function (params, response) {
        var tags = {}, accepted = {};
        if (params.event_value !== '1' || params.event_update_status !== '0') {
            return tags;
        }
        try {
            accepted = JSON.parse(response) || {};
        }
        catch (error) {
            accepted = {};
        }
        tags.__yobidashi_incident = accepted.problem_key || 'zabbix:' + params.event_id;
        var page = Yobidashi.clean(params.incident_page);
        if (typeof page === 'string' && /^https?:\/\/\S+$/.test(page)) {
            tags.__yobidashi_url = page.replace(/\/+$/, '') + '/' + encodeURIComponent(params.event_id);
        }
        return tags;
    }
};

try {
    return Yobidashi.send(JSON.parse(value));
}
catch (error) {
    Zabbix.log(3, '[Yobidashi webhook] notification failed: ' + error);
    throw 'Yobidashi notification failed: ' + error;
}
