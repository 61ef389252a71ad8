#!/usr/bin/python3
# Writes the seed inputs of tests/fuzz/corpus/<target>/ (seed-*): small, meaningful inputs the
# fuzzers start from. The inputs of bugs the fuzzers found (regress-*) are added by hand, never
# by this script. Run from anywhere; it rewrites every seed-* file.
import base64
import hashlib
import hmac
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, 'corpus')

# the keys of fuzz-token.c
SECRETS = [b'fuzz-secret-hs256-0123456789abcd',
           b'fuzz-secret-hs384-0123456789abcdef0123456789abcd',
           b'fuzz-secret-hs512-0123456789abcdef0123456789abcdef0123456789abcd']


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, 'seed-' + name), 'wb') as f:
        f.write(data)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=')


def signed_token(header, claims, key=0):
    digest = [hashlib.sha256, hashlib.sha384, hashlib.sha512][key]
    text = b64url(header.encode()) + b'.' + b64url(claims.encode())
    return text + b'.' + b64url(hmac.new(SECRETS[key], text, digest).digest())


MESSAGES = {
    'ping': '{"type":"ping"}',
    'message-room': '{"type":"message","room_id":3,"content":"hello"}',
    'message-dm': '{"type":"message","to":42,"content":"hi","data":{"reply_to":7}}',
    'message-data': '{"type":"message","room_id":1,"data":[1,-2.5e3,true,false,null,"x",{"a":[]}]}',
    'message-escapes': '{"type":"message","room_id":1,"content":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"}',
    'message-utf8': '{"type":"message","room_id":1,"content":"héllo wörld 你好 😀"}',
    'message-escaped-name': '{"t\\u0079pe":"message","room_id":1,"content":"x"}',
    'message-nul': '{"type":"message","room_id":1,"content":"a\\u0000b"}',
    'message-big-id': '{"type":"message","room_id":18446744073709551616,"content":"x"}',
    'message-negative': '{"type":"message","room_id":-1}',
    'message-duplicate': '{"type":"ping","type":"message","room_id":1,"room_id":2}',
    'join': '{"type":"join","room_id":3}',
    'join-recovery': '{"type":"join","room_id":3,"since":10,"epoch":"e1"}',
    'leave': '{"type":"leave","room_id":3}',
    'presence': '{"type":"presence","room_id":3}',
    'history': '{"type":"history","room_id":3,"before":100,"limit":20}',
    'sync': '{"type":"sync","since":5,"epoch":"abc"}',
    'refresh': '{"type":"refresh","token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}',
    'unknown-type': '{"type":"shout"}',
    'not-object': '[1,2,3]',
    'whitespace': ' \t\r\n{ "type" : "ping" , "timestamp" : 0 } \n',
    'deep': '{"type":"message","room_id":1,"data":' + '[' * 64 + ']' * 64 + '}',
    'too-deep': '{"type":"message","room_id":1,"data":' + '[' * 66 + ']' * 66 + '}',
    'numbers': '[0,-0,1.5,1e10,1E-5,-0.0e+0,123456789012345678901234567890]',
    'bad-number': '[01]',
    'lenient': "{'type':'ping'} // json-glib takes this",
    'lone-surrogate': '{"type":"message","room_id":1,"content":"\\ud800"}',
    'overlong-utf8': b'{"type":"message","content":"\xc0\xaf"}',
    'truncated': '{"type":"message","room_id":1,"content":"abc',
}

for name, text in MESSAGES.items():
    write('json', name, text)

# fuzz-token.c: first byte 0 raw token, 1-3 HEADER\0CLAIMS signed, 4 HEADER\0CLAIMS\0SIG
HS256 = '{"alg":"HS256","typ":"JWT"}'
TOKENS = {
    'raw-valid': b'\x00' + signed_token(HS256, '{"user_id":42,"exp":4102444800}'),
    'raw-malformed': b'\x00' + b'abc.def',
    'raw-padding': b'\x00' + b'eyJhbGciOiJIUzI1NiJ9.e30=.abc=',
    'raw-none-alg': b'\x00' + b64url(b'{"alg":"none"}') + b'.' + b64url(b'{"user_id":1}') + b'.',
    'claims-user': b'\x01{"user_id":42}',
    'claims-sub': b'\x01{"sub":"1001","exp":4102444800,"nbf":0}',
    'claims-rooms': b'\x01{"user_id":7,"rooms":[1,2,3]}',
    'claims-bad-rooms': b'\x01{"user_id":7,"rooms":[0,"x"]}',
    'claims-expired': b'\x01{"user_id":7,"exp":1}',
    'claims-float-exp': b'\x01{"user_id":7,"exp":1e300}',
    'claims-big-user': b'\x01{"user_id":18446744073709551615}',
    'header-kid': b'\x02{"alg":"HS384","kid":"k384"}\x00{"user_id":5,"iss":"https://id.example.org","aud":["x","chathub"]}',
    'header-kid-512': b'\x03{"alg":"HS512","kid":"k512","typ":"JWT"}\x00{"sub":9,"iss":"https://id.example.org","aud":"chathub"}',
    'header-unknown-kid': b'\x01{"alg":"HS256","kid":"nope"}\x00{"user_id":5}',
    'header-crit': b'\x01{"alg":"HS256","crit":["exp"]}\x00{"user_id":5}',
    'header-alg-mismatch': b'\x01{"alg":"HS512"}\x00{"user_id":5}',
    'claims-nul': b'\x01{"user_id":5,"name":"a\\u0000b"}',
    'unsigned': b'\x04{"alg":"HS256"}\x00{"user_id":5}\x00not a signature',
}
for name, data in TOKENS.items():
    write('token', name, data)

# fuzz-config.c writes these files into /tmp/chathub-fuzz-keys
K = '/tmp/chathub-fuzz-keys/'
with open(os.path.join(HERE, '..', '..', 'data', 'chathub.conf')) as f:
    example = f.read()
CONFIGS = {
    # without its comments, which name /run (fuzz-config.c skips such inputs)
    'example': ''.join(line for line in example.replace('/etc/chathub/secret', K + 'secret')
                       .splitlines(keepends=True) if not line.startswith('#')),
    'minimal': '[auth]\nsecret-file=' + K + 'secret\n',
    'no-key': '[server]\nport=8080\n',
    'full': f"""# every group
[server]
address=0.0.0.0
port=0
path=/chat
max-connections=100
web=false
reuse-port=true
allowed-origins=https://chat.example.org, http://localhost:8080 *
trusted-proxies=10.0.0.0/8 ::1 192.168.1.1
tls-certificate={K}tls.crt
tls-key={K}tls.key
[auth]
algorithm=HS384
secret-file={K}secret-48
issuer=https://id.example.org
audience=chathub
leeway=3600
[limits]
max-message-size=1
outbox-size=1024
ping-interval=0
idle-timeout=86400
handshake-timeout=3600
max-connections-per-user=0
upgrades-per-second=1000000
upgrade-burst=1
messages-per-second=0
message-burst=0
max-rooms=0
[dbus]
admin-group=wheel
message-signals=false
exit-on-idle=31536000
[store]
backend=memory
sync=full
path=/var/lib/chathub/chathub.db
history-size=1
history-ttl=0
dm-ttl=0
[cluster]
backend=redis
redis-address=/srv/redis/redis.sock
node-name=node-1
key-prefix=chat
redis-password-file={K}password
redis-timeout=3600
presence-ttl=86400
announce-interval=1
[metrics]
enabled=true
address=127.0.0.1
port=9090
""",
    'key-groups': f"""[auth]
algorithm=RS256
public-key-file={K}rsa.pem
[key:2026-01]
algorithm=ES256
public-key-file={K}ec.pem
[key:hs]
algorithm=HS512
secret-file={K}secret-64
""",
    'key-groups-only': f"[key:a]\nsecret-file={K}secret\n[key:b]\nalgorithm=HS256\nsecret-file={K}secret\n",
    'key-too-many': '[auth]\nsecret-file=' + K + 'secret\n' + ''.join(
        f'[key:k{i}]\nsecret-file={K}secret\n' for i in range(8)),
    'key-bad-id': f'[key:has space]\nsecret-file={K}secret\n',
    'key-wrong-file': f'[key:x]\nalgorithm=ES256\nsecret-file={K}secret\n',
    'short-secret': f'[auth]\nsecret-file={K}short\n',
    'empty-secret': f'[auth]\nsecret-file={K}empty\n',
    'missing-file': '[auth]\nsecret-file=/nonexistent/secret\n',
    'rsa-as-secret': f'[auth]\nalgorithm=RS256\npublic-key-file={K}secret\n',
    'tls-mismatch': f'[auth]\nsecret-file={K}secret\n[server]\ntls-certificate={K}tls.crt\ntls-key={K}tls-other.key\n',
    'tls-half': f'[auth]\nsecret-file={K}secret\n[server]\ntls-key={K}tls.key\n',
    'tls-private-as-cert': f'[auth]\nsecret-file={K}secret\n[server]\ntls-certificate={K}tls.key\ntls-key={K}tls.key\n',
    'metrics-port-only': f'[auth]\nsecret-file={K}secret\n[metrics]\nport=9090\n',
    'metrics-address-only': f'[auth]\nsecret-file={K}secret\n[metrics]\nenabled=true\naddress=::1\n',
    'typo-key': f'[auth]\nsecret-file={K}secret\n[server]\nprot=8080\n',
    'typo-group': f'[auth]\nsecret-file={K}secret\n[limit]\nmax-rooms=1\n',
    'bad-values': f'[auth]\nsecret-file={K}secret\n[server]\nport=65536\nweb=yes\n',
    'relative-store': f'[auth]\nsecret-file={K}secret\n[store]\npath=relative.db\n',
    'escapes': f'[auth]\nsecret-file={K}secret\nissuer=\\s  tab\\there \\\\ \\n\n[cluster]\nnode-name=a\\tb\n',
    'locale-keys': f'[auth]\nsecret-file={K}secret\nissuer[de]=x\n',
    'bad-origin': f'[auth]\nsecret-file={K}secret\n[server]\nallowed-origins=https://x/path\n',
    'bad-proxy': f'[auth]\nsecret-file={K}secret\n[server]\ntrusted-proxies=10.0.0.0/33\n',
    'reuse-port-alone': f'[auth]\nsecret-file={K}secret\n[server]\nreuse-port=true\n',
    'not-keyfile': 'this is not a key file\n\x00\xff',
}
for name, text in CONFIGS.items():
    write('config', name, text)


# fuzz-websocket.c: what a client sends after the upgrade
def frame(opcode, payload=b'', fin=True, mask=b'\0\0\0\0', rsv=0, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack('>H', n)
    else:
        head += bytes([bit | 127]) + struct.pack('>Q', n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(message, **kw):
    return frame(0x1, message, **kw)


def close(code=1000, reason=b''):
    return frame(0x8, struct.pack('>H', code) + reason)


M = b'\x37\xfa\x21\x3d'
FRAMES = {
    'ping': text('{"type":"ping"}') + close(),
    'join-message-leave': text('{"type":"join","room_id":1}') +
        text('{"type":"message","room_id":1,"content":"hello","data":{"x":[1,2]}}') +
        text('{"type":"presence","room_id":1}') + text('{"type":"history","room_id":1,"limit":5}') +
        text('{"type":"leave","room_id":1}') + close(),
    'masked': text('{"type":"join","room_id":1}', mask=M) +
        text('{"type":"message","room_id":1,"content":"masked"}', mask=M) + close(),
    'dm': text('{"type":"message","to":2,"content":"hi"}') + text('{"type":"sync"}') + close(),
    'sync-recovery': text('{"type":"join","room_id":1,"since":0,"epoch":"x"}') +
        text('{"type":"sync","since":3,"epoch":"e"}') + close(),
    'refresh': text('{"type":"refresh","token":"a.b.c"}') + close(),
    'errors': text('{"type":"message"}') + text('not json') + text('{"type":"join","room_id":0}') +
        text('{"type":"leave","room_id":5}') + text('{"type":"bogus"}') + close(),
    'fragmented': frame(0x1, '{"type":"mess', fin=False) + frame(0x0, 'age","room_id":1,', fin=False) +
        frame(0x9, 'ping in between') + frame(0x0, '"content":"frag"}') + close(),
    'control': frame(0x9, 'ping') + frame(0xA, 'unsolicited pong') + close(1001, b'going away'),
    'binary': frame(0x2, b'\x00\x01\x02'),
    'unmasked': text('{"type":"ping"}', mask=None),
    'too-big': text('{"type":"message","room_id":1,"content":"' + 'x' * 3000 + '"}'),
    'too-big-fragments': frame(0x1, 'x' * 1500, fin=False) + frame(0x0, 'y' * 1500),
    'length-64': frame(0x1, '', length=1 << 40),
    'length-16': text('{"type":"ping","content":"' + 'z' * 200 + '"}'),
    'rsv-bits': text('{"type":"ping"}', rsv=4),
    'bad-opcode': frame(0x3, 'x'),
    'continuation-first': frame(0x0, 'x'),
    'long-ping': frame(0x9, 'p' * 126),
    'fragmented-ping': frame(0x9, 'p', fin=False),
    'bad-utf8': text(b'{"type":"message","room_id":1,"content":"\xff"}'),
    'close-bad-code': close(999) + text('{"type":"ping"}'),
    'close-reason-utf8': close(1000, b'\xc3\x28'),
    'close-short': frame(0x8, b'\x03'),
    'truncated': text('{"type":"ping"}')[:5],
    'many-messages': b''.join(text('{"type":"message","room_id":1,"content":"%d"}' % i)
                              for i in range(250)) + close(),
    'join-many': b''.join(text('{"type":"join","room_id":%d}' % i) for i in range(1, 30)) + close(),
    'empty': b'',
}
for name, data in FRAMES.items():
    write('websocket', name, data)
