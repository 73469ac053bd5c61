# Proves the test infrastructure itself: the image generator, the three auth modes, TLS, the pusher's nosi
# shape and every proxy fault. Uses plain HttpClient (no curl), not the OrasStaging cmdlets.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force

    function New-RawClient {
        # No redirects, no proxy, bounded: the tests look at every status code themselves.
        $handler = [System.Net.Http.SocketsHttpHandler]::new()
        $handler.AllowAutoRedirect = $false
        $handler.UseProxy = $false
        $handler.AutomaticDecompression = [System.Net.DecompressionMethods]::None
        $client = [System.Net.Http.HttpClient]::new($handler)
        $client.Timeout = [TimeSpan]::FromSeconds(30)
        $client
    }

    function New-TlsClient([string] $CaPath) {
        # Follows redirects; trusts only the given CA (no callback: the chain policy is checked by .NET itself),
        # or, without -CaPath, the system's store, which does not hold the TestKit's CA.
        $handler = [System.Net.Http.SocketsHttpHandler]::new()
        $handler.UseProxy = $false
        if ($CaPath) {
            $policy = [System.Security.Cryptography.X509Certificates.X509ChainPolicy]::new()
            $policy.TrustMode = [System.Security.Cryptography.X509Certificates.X509ChainTrustMode]::CustomRootTrust
            $policy.RevocationMode = [System.Security.Cryptography.X509Certificates.X509RevocationMode]::NoCheck
            $null = $policy.CustomTrustStore.Add([System.Security.Cryptography.X509Certificates.X509Certificate2]::new($CaPath))
            $handler.SslOptions.CertificateChainPolicy = $policy
        }
        $client = [System.Net.Http.HttpClient]::new($handler)
        $client.Timeout = [TimeSpan]::FromSeconds(20)
        $client
    }

    function Send-Raw {
        # One request; returns status, headers (as one string per name), the body bytes received and any
        # error that cut the body short.
        param([string] $Url, [hashtable] $Headers = @{}, [string] $Method = 'GET')
        $request = [System.Net.Http.HttpRequestMessage]::new([System.Net.Http.HttpMethod]::new($Method), $Url)
        foreach ($key in $Headers.Keys) { $null = $request.Headers.TryAddWithoutValidation($key, [string]$Headers[$key]) }
        $response = $script:Client.SendAsync($request, [System.Net.Http.HttpCompletionOption]::ResponseHeadersRead).GetAwaiter().GetResult()
        $buffer = [System.IO.MemoryStream]::new()
        $err = $null
        try {
            $stream = $response.Content.ReadAsStream()
            $stream.CopyTo($buffer)
        }
        catch {
            $err = $_.Exception
        }
        $h = @{}
        foreach ($pair in @($response.Headers) + @($response.Content.Headers)) { $h[$pair.Key] = ($pair.Value -join ', ') }
        $result = [pscustomobject]@{ Status = [int]$response.StatusCode; Headers = $h; Body = $buffer.ToArray(); Error = $err }
        $response.Dispose()
        $result
    }

    function Get-Sha256Hex([byte[]] $Bytes) {
        [Convert]::ToHexString([System.Security.Cryptography.SHA256]::HashData($Bytes)).ToLowerInvariant()
    }

    function Get-Token {
        param($Registry, [string] $Scope, [string] $User, [string] $Password)
        $headers = @{}
        if ($User) { $headers.Authorization = 'Basic ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("${User}:$Password")) }
        Send-Raw "$($Registry.tokenUrl)?service=$($Registry.service)&scope=$([uri]::EscapeDataString($Scope))" -Headers $headers
    }

    function ConvertFrom-Base64Url([string] $Text) {
        $s = $Text.Replace('-', '+').Replace('_', '/')
        switch ($s.Length % 4) { 2 { $s += '==' } 3 { $s += '=' } }
        [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($s))
    }

    if (-not ('TestKitBytes' -as [type])) {
        # Byte-array checks in C#: PowerShell cannot hold spans and loops over megabytes slowly.
        Add-Type -TypeDefinition @'
public static class TestKitBytes
{
    public static bool IsZero(byte[] a, long offset, int length)
    {
        return System.MemoryExtensions.IndexOfAnyExcept(new System.ReadOnlySpan<byte>(a, (int)offset, length), (byte)0) < 0;
    }

    public static bool Same(byte[] a, int aOffset, byte[] b, int bOffset, int length)
    {
        if (aOffset + length > a.Length || bOffset + length > b.Length) return false;
        return System.MemoryExtensions.SequenceEqual(new System.ReadOnlySpan<byte>(a, aOffset, length), new System.ReadOnlySpan<byte>(b, bOffset, length));
    }

    public static int[] Diff(byte[] a, byte[] b)
    {
        var result = new System.Collections.Generic.List<int>();
        for (int i = 0; i < System.Math.Max(a.Length, b.Length) && result.Count < 100; i++)
        {
            if (i >= a.Length || i >= b.Length || a[i] != b[i]) result.Add(i);
        }
        return result.ToArray();
    }

    public static bool HasZeroWindow(byte[] a, int window)
    {
        return System.MemoryExtensions.IndexOf(new System.ReadOnlySpan<byte>(a), new System.ReadOnlySpan<byte>(new byte[window])) >= 0;
    }
}
'@
    }

    $script:Client = New-RawClient
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("testkit-tests-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Path $script:Work
    $script:OciAccept = @{ Accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' }
}

AfterAll {
    if ($script:Client) { $script:Client.Dispose() }
    if ($script:Work -and (Test-Path $script:Work)) { Remove-Item $script:Work -Recurse -Force }
}

Describe 'Disk image generator' {
    It 'gives the same bytes for the same parameters and different bytes for another seed' {
        $a = New-TestDiskImage -Path (Join-Path $Work 'a.img') -Size (5MB + 100) -Seed 11
        $b = New-TestDiskImage -Path (Join-Path $Work 'b.img') -Size (5MB + 100) -Seed 11
        $c = New-TestDiskImage -Path (Join-Path $Work 'c.img') -Size (5MB + 100) -Seed 12
        $a.Length | Should -Be (5MB + 100)
        (Get-FileHash $a.FullName).Hash | Should -Be (Get-FileHash $b.FullName).Hash
        (Get-FileHash $a.FullName).Hash | Should -Not -Be (Get-FileHash $c.FullName).Hash
    }

    It 'has an MBR signature, a GPT header, a non-zero last sector and zero runs (<Size> bytes)' -ForEach @(
        @{ Size = 8MB }, @{ Size = 8MB + 100 }, @{ Size = 3MB + 65535 }
    ) {
        $img = New-TestDiskImage -Path (Join-Path $Work "s$Size.img") -Size $Size -Seed 5
        $bytes = [IO.File]::ReadAllBytes($img.FullName)
        $bytes.Length | Should -Be $Size
        $bytes[510] | Should -Be 0x55
        $bytes[511] | Should -Be 0xAA
        $bytes[450] | Should -Be 0xEE -Because 'a protective MBR entry has type 0xEE'
        [Text.Encoding]::ASCII.GetString($bytes, 512, 8) | Should -Be 'EFI PART'
        [TestKitBytes]::IsZero($bytes, $Size - 512, 512) | Should -BeFalse -Because 'the last sector holds the backup GPT header'
        # Count 64 KiB clusters with data, and find a run of at least two zero clusters.
        $clusters = [Math]::Ceiling($Size / 64KB)
        $data = 0; $run = 0; $longest = 0
        for ($i = 0; $i -lt $clusters; $i++) {
            $len = [Math]::Min(64KB, $Size - $i * 64KB)
            if (-not [TestKitBytes]::IsZero($bytes, $i * 64KB, $len)) { $data++; $run = 0 }
            else { $run++; $longest = [Math]::Max($longest, $run) }
        }
        $longest | Should -BeGreaterOrEqual 2
        $data | Should -BeGreaterThan 1
    }

    It 'holds data in about DataFraction of the clusters, with random and text-like regions' {
        $size = 64MB
        $img = New-TestDiskImage -Path (Join-Path $Work 'fraction.img') -Size $size -Seed 3 -DataFraction 0.33
        $bytes = [IO.File]::ReadAllBytes($img.FullName)
        $data = 0; $text = 0
        for ($i = 0; $i -lt $size / 64KB; $i++) {
            if (-not [TestKitBytes]::IsZero($bytes, $i * 64KB, 64KB)) { $data++ }
            if ([Text.Encoding]::ASCII.GetString($bytes, $i * 64KB, 64) -match '^[A-Za-z0-9 :\n]+$') { $text++ }
        }
        ($data / ($size / 64KB)) | Should -BeGreaterThan 0.2
        ($data / ($size / 64KB)) | Should -BeLessThan 0.46
        $text | Should -BeGreaterThan 10
        $gz = [IO.MemoryStream]::new()
        $z = [IO.Compression.GZipStream]::new($gz, [IO.Compression.CompressionLevel]::Fastest, $true)
        $z.Write($bytes, 0, $bytes.Length); $z.Dispose()
        $gz.Length | Should -BeLessThan ($size * 0.33) -Because 'zero runs and text compress'
        $gz.Length | Should -BeGreaterThan ($size * 0.05) -Because 'random regions do not'
    }

    It 'writes the file sparse (zero runs are holes)' -Skip:(-not $IsLinux) {
        $img = New-TestDiskImage -Path (Join-Path $Work 'sparse.img') -Size 256MB -Seed 9 -DataFraction 0.1
        $blocks = [long](& stat -c '%b' $img.FullName)
        ($blocks * 512) | Should -BeLessThan (256MB / 2)
    }

    It 'makes all-zero and all-random shapes' {
        $z = New-TestDiskImage -Path (Join-Path $Work 'z.img') -Size (1MB + 3) -Shape Zeros
        $r = New-TestDiskImage -Path (Join-Path $Work 'r.img') -Size (1MB + 3) -Shape Random -Seed 4
        $zb = [IO.File]::ReadAllBytes($z.FullName)
        $rb = [IO.File]::ReadAllBytes($r.FullName)
        [TestKitBytes]::IsZero($zb, 0, $zb.Length) | Should -BeTrue
        $zb.Length | Should -Be (1MB + 3)
        $rb.Length | Should -Be (1MB + 3)
        [TestKitBytes]::HasZeroWindow($rb, 64) | Should -BeFalse
    }
}

Describe 'Anonymous registry, pusher and proxy' {
    BeforeAll {
        $script:Srv = Start-TestRegistry
        $script:Image = New-TestDiskImage -Path (Join-Path $Work 'anon.img') -Size (3MB + 100) -Seed 21
        $script:P = Publish-TestImage -Registry $Srv -Repository lab/debian -Tag latest -ImagePath $Image.FullName -Title 'debian-12.img.gz'
        $script:Blob = (Send-Raw "$($Srv.registryUrl)/v2/lab/debian/blobs/$($P.digest)").Body
        $script:BlobUrl = "$($Srv.proxyUrl)/v2/lab/debian/blobs/$($P.digest)"
    }
    AfterAll {
        Stop-TestRegistry $script:Srv
    }
    AfterEach {
        Clear-ProxyFault -Registry $Srv
    }

    It 'describes every endpoint in the serve JSON' {
        foreach ($name in 'registry', 'registryUrl', 'proxy', 'proxyUrl', 'controlUrl', 'cdnUrl', 'tokenUrl', 'username', 'password', 'privateRepository', 'dataDir') {
            $Srv.$name | Should -Not -BeNullOrEmpty -Because $name
        }
        $Srv.registry | Should -Match '^127\.0\.0\.1:\d+$'
        $Srv.proxy | Should -Match '^127\.0\.0\.1:\d+$'
        $Srv.registryUrl | Should -Be "http://$($Srv.registry)"
        $Srv.caCertPath | Should -BeNullOrEmpty
        Test-Path $Srv.dataDir | Should -BeTrue
    }

    It 'serves anonymous pulls' {
        $ping = Send-Raw "$($Srv.registryUrl)/v2/"
        $ping.Status | Should -Be 200
        $m = Send-Raw "$($Srv.registryUrl)/v2/lab/debian/manifests/latest" -Headers $OciAccept
        $m.Status | Should -Be 200
        $m.Headers['Docker-Content-Digest'] | Should -Be $P.manifestDigest
        "sha256:$(Get-Sha256Hex $m.Body)" | Should -Be $P.manifestDigest
        "sha256:$(Get-Sha256Hex $Blob)" | Should -Be $P.digest
        $Blob.Length | Should -Be $P.size
    }

    It 'pushes the exact nosi manifest shape' {
        $m = [Text.Encoding]::UTF8.GetString((Send-Raw "$($Srv.registryUrl)/v2/lab/debian/manifests/$($P.manifestDigest)" -Headers $OciAccept).Body) | ConvertFrom-Json
        $m.schemaVersion | Should -Be 2
        $m.mediaType | Should -Be 'application/vnd.oci.image.manifest.v1+json'
        $m.artifactType | Should -Be 'application/vnd.nosi.disk-image.v1+gzip'
        $m.config.mediaType | Should -Be 'application/vnd.oci.empty.v1+json'
        $m.config.digest | Should -Be 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
        $m.config.size | Should -Be 2
        $m.layers.Count | Should -Be 3
        $m.layers[0].mediaType | Should -Be 'application/vnd.nosi.disk-image.layer.v1+gzip'
        $m.layers[0].digest | Should -Be $P.digest
        $m.layers[0].size | Should -Be $P.size
        $m.layers[0].annotations.'org.opencontainers.image.title' | Should -Be 'debian-12.img.gz'
        $m.layers[0].annotations.'org.nosi.image.size' | Should -Be ([string]$Image.Length)
        $m.layers[1].mediaType | Should -Be 'text/plain'
        $m.layers[1].annotations.'org.opencontainers.image.title' | Should -Be 'debian-12.img.gz.sha256'
        $m.layers[2].mediaType | Should -Be 'application/vnd.nosi.metadata.v1+json'
        $m.layers[2].annotations.'org.opencontainers.image.title' | Should -Be 'metadata.json'

        $sidecar = [Text.Encoding]::UTF8.GetString((Send-Raw "$($Srv.registryUrl)/v2/lab/debian/blobs/$($m.layers[1].digest)").Body)
        $sidecar | Should -BeExactly "$($P.digest.Substring(7))  debian-12.img.gz`n"
        $metadata = [Text.Encoding]::UTF8.GetString((Send-Raw "$($Srv.registryUrl)/v2/lab/debian/blobs/$($m.layers[2].digest)").Body) | ConvertFrom-Json
        $metadata.image_size | Should -Be $Image.Length

        # The layer really is the gzip of the raw image.
        $raw = [IO.MemoryStream]::new()
        $gz = [IO.Compression.GZipStream]::new([IO.MemoryStream]::new($Blob), [IO.Compression.CompressionMode]::Decompress)
        $gz.CopyTo($raw)
        Get-Sha256Hex $raw.ToArray() | Should -Be (Get-FileHash $Image.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        $P.rawSha256 | Should -Be (Get-FileHash $Image.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        $P.rawSize | Should -Be $Image.Length
    }

    It 'pushes <Compression> layers with the matching media type and title suffix' -ForEach @(
        @{ Compression = 'zstd'; Suffix = '+zstd'; Ext = '.img.zst'; Magic = '28B52FFD' }
        @{ Compression = 'xz'; Suffix = '+xz'; Ext = '.img.xz'; Magic = 'FD377A585A00' }
        @{ Compression = 'bzip2'; Suffix = '+bzip2'; Ext = '.img.bz2'; Magic = '425A68' }
        @{ Compression = 'none'; Suffix = ''; Ext = '.img'; Magic = '' }
    ) {
        $small = New-TestDiskImage -Path (Join-Path $Work "c-$Compression.img") -Size 300KB -Seed 2
        $p = Publish-TestImage -Registry $Srv -Repository lab/compressed -Tag $Compression -ImagePath $small.FullName -Compression $Compression -NoSizeAnnotation
        $p.mediaType | Should -Be "application/vnd.nosi.disk-image.layer.v1$Suffix"
        $p.artifactType | Should -Be "application/vnd.nosi.disk-image.v1$Suffix"
        $p.title | Should -Be "c-$Compression$Ext"
        $m = [Text.Encoding]::UTF8.GetString((Send-Raw "$($Srv.registryUrl)/v2/lab/compressed/manifests/$Compression" -Headers $OciAccept).Body) | ConvertFrom-Json
        $m.layers[0].annotations.PSObject.Properties.Name | Should -Not -Contain 'org.nosi.image.size'
        $blob = (Send-Raw "$($Srv.registryUrl)/v2/lab/compressed/blobs/$($p.digest)").Body
        if ($Magic) { [Convert]::ToHexString($blob, 0, $Magic.Length / 2) | Should -Be $Magic }
        else { Get-Sha256Hex $blob | Should -Be $p.rawSha256 }
    }

    It 'pushes an OCI index over linux/amd64 and linux/arm64 with distinct images' {
        $p = Publish-TestImage -Registry $Srv -Repository lab/multi -Tag latest -ImagePath $Image.FullName -Index
        $p.indexDigest | Should -Match '^sha256:[0-9a-f]{64}$'
        $index = Send-Raw "$($Srv.registryUrl)/v2/lab/multi/manifests/latest" -Headers $OciAccept
        $index.Headers['Docker-Content-Digest'] | Should -Be $p.indexDigest
        $doc = [Text.Encoding]::UTF8.GetString($index.Body) | ConvertFrom-Json
        $doc.mediaType | Should -Be 'application/vnd.oci.image.index.v1+json'
        $doc.manifests.Count | Should -Be 2
        $doc.manifests[0].platform.architecture | Should -Be 'amd64'
        $doc.manifests[1].platform.architecture | Should -Be 'arm64'
        $doc.manifests[0].platform.os | Should -Be 'linux'
        $doc.manifests[0].digest | Should -Be $p.manifestDigest
        $p.platforms[0].digest | Should -Not -Be $p.platforms[1].digest
        $p.platforms[0].rawSha256 | Should -Not -Be $p.platforms[1].rawSha256
        (Send-Raw "$($Srv.registryUrl)/v2/lab/multi/manifests/$($doc.manifests[1].digest)" -Headers $OciAccept).Status | Should -Be 200
    }

    It 'pushes an already compressed image as the layer as it is' {
        $gzPath = Join-Path $Work 'pre.img.gz'
        $source = [IO.File]::OpenRead($Image.FullName)
        $target = [IO.File]::Create($gzPath)
        $gz = [IO.Compression.GZipStream]::new($target, [IO.Compression.CompressionLevel]::Optimal)
        $source.CopyTo($gz); $gz.Dispose(); $source.Dispose()
        $p = Publish-TestImage -Registry $Srv -Repository lab/pre -Path $gzPath -Compression zstd
        $p.compression | Should -Be 'gzip' -Because 'the magic bytes win'
        $p.title | Should -Be 'pre.img.gz'
        $p.digest | Should -Be "sha256:$((Get-FileHash $gzPath -Algorithm SHA256).Hash.ToLowerInvariant())"
        $p.rawSha256 | Should -Be (Get-FileHash $Image.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        $p.rawSize | Should -Be $Image.Length
        $Srv.Authority | Should -Be $Srv.registry
    }

    It 'pushes a Helm-chart-shaped artifact' {
        $p = Publish-TestImage -Registry $Srv -Repository lab/chart -Tag 0.1.0 -Helm
        $m = [Text.Encoding]::UTF8.GetString((Send-Raw "$($Srv.registryUrl)/v2/lab/chart/manifests/0.1.0" -Headers $OciAccept).Body) | ConvertFrom-Json
        $m.config.mediaType | Should -Be 'application/vnd.cncf.helm.config.v1+json'
        $m.layers[0].mediaType | Should -Be 'application/vnd.cncf.helm.chart.content.v1.tar+gzip'
        $m.layers[0].digest | Should -Be $p.digest
    }

    It 'pushes through the proxy as well as directly' {
        $p = Publish-TestImage -Registry $Srv -Repository lab/viaproxy -Tag latest -ImagePath $Image.FullName -ViaProxy
        $p.digest | Should -Be $P.digest
        (Send-Raw "$($Srv.registryUrl)/v2/lab/viaproxy/manifests/latest" -Headers $OciAccept).Status | Should -Be 200
        (Get-ProxyStats -Registry $Srv).requestsByKind.upload | Should -BeGreaterThan 0
    }

    It 'passes Range, Content-Range and 206 through the proxy and counts requests' {
        Reset-ProxyStats -Registry $Srv
        $m = Send-Raw "$($Srv.proxyUrl)/v2/lab/debian/manifests/latest" -Headers $OciAccept
        $m.Status | Should -Be 200
        $r = Send-Raw $BlobUrl -Headers @{ Range = 'bytes=1000-1999' }
        $r.Status | Should -Be 206
        $r.Headers['Content-Range'] | Should -Be "bytes 1000-1999/$($P.size)"
        [TestKitBytes]::Same($r.Body, 0, $Blob, 1000, 1000) | Should -BeTrue
        $s = Get-ProxyStats -Registry $Srv
        $s.totalRequests | Should -Be 2
        $s.requestsByKind.manifest | Should -Be 1
        $s.requestsByKind.blob | Should -Be 1
        $s.blobBytesSent | Should -Be 1000
        $s.rangeHeaders | Should -Contain 'bytes=1000-1999'
    }

    It 'fault Cut closes the connection after AfterBytes body bytes, once' {
        $null = Set-ProxyFault -Registry $Srv -Kind Cut -AfterBytes 100000
        $first = Send-Raw $BlobUrl
        $first.Status | Should -Be 200
        $first.Error | Should -Not -BeNullOrEmpty
        $first.Body.Length | Should -Be 100000
        [TestKitBytes]::Same($first.Body, 0, $Blob, 0, 100000) | Should -BeTrue
        $second = Send-Raw $BlobUrl
        $second.Error | Should -BeNullOrEmpty
        Get-Sha256Hex $second.Body | Should -Be $P.digest.Substring(7)
    }

    It 'fault Cut with -Times 2 cuts two requests, then lets the third through' {
        $null = Set-ProxyFault -Registry $Srv -Kind Cut -AfterBytes 5000 -Times 2
        (Send-Raw $BlobUrl).Body.Length | Should -Be 5000
        $resume = Send-Raw $BlobUrl -Headers @{ Range = 'bytes=5000-' }
        $resume.Status | Should -Be 206
        $resume.Body.Length | Should -Be 5000
        $resume.Error | Should -Not -BeNullOrEmpty
        (Send-Raw $BlobUrl).Body.Length | Should -Be $P.size
        (Get-ProxyFault -Registry $Srv)[0].fired | Should -Be 2
    }

    It 'fault TooManyRequests answers 429 with Retry-After n times' {
        $null = Set-ProxyFault -Registry $Srv -Kind TooManyRequests -Times 2 -RetryAfter 3
        foreach ($i in 1..2) {
            $r = Send-Raw $BlobUrl
            $r.Status | Should -Be 429
            $r.Headers['Retry-After'] | Should -Be '3'
        }
        (Send-Raw $BlobUrl).Status | Should -Be 200
        (Get-ProxyStats -Registry $Srv).faultsFired.tooManyRequests | Should -BeGreaterOrEqual 2
    }

    It 'fault ServiceUnavailable answers 503 n times, also on manifests' {
        $null = Set-ProxyFault -Registry $Srv -Kind ServiceUnavailable -Times 3 -Target Manifest
        (Send-Raw $BlobUrl).Status | Should -Be 200 -Because 'the fault targets manifests'
        foreach ($i in 1..3) { (Send-Raw "$($Srv.proxyUrl)/v2/lab/debian/manifests/latest" -Headers $OciAccept).Status | Should -Be 503 }
        (Send-Raw "$($Srv.proxyUrl)/v2/lab/debian/manifests/latest" -Headers $OciAccept).Status | Should -Be 200
    }

    It 'fault Unauthorized answers 401 with the registry challenge' {
        $null = Set-ProxyFault -Registry $Srv -Kind Unauthorized
        $r = Send-Raw $BlobUrl
        $r.Status | Should -Be 401
        $r.Headers['WWW-Authenticate'] | Should -Be "Bearer realm=`"$($Srv.tokenUrl)`",service=`"$($Srv.service)`",scope=`"repository:lab/debian:pull`""
        (Send-Raw $BlobUrl).Status | Should -Be 200
    }

    It 'fault Unauthorized with -AfterBytes expires the token mid-download' {
        $null = Set-ProxyFault -Registry $Srv -Kind Unauthorized -AfterBytes 20000
        $old = [Text.Encoding]::UTF8.GetString((Get-Token $Srv 'repository:lab/debian:pull').Body) | ConvertFrom-Json
        $cut = Send-Raw $BlobUrl -Headers @{ Authorization = "Bearer $($old.token)" }
        $cut.Body.Length | Should -Be 20000
        $cut.Error | Should -Not -BeNullOrEmpty
        $again = Send-Raw $BlobUrl -Headers @{ Authorization = "Bearer $($old.token)"; Range = 'bytes=20000-' }
        $again.Status | Should -Be 401
        $again.Headers['WWW-Authenticate'] | Should -Match '^Bearer realm='
        $fresh = [Text.Encoding]::UTF8.GetString((Get-Token $Srv 'repository:lab/debian:pull').Body) | ConvertFrom-Json
        $fresh.token | Should -Not -Be $old.token
        $resumed = Send-Raw $BlobUrl -Headers @{ Authorization = "Bearer $($fresh.token)"; Range = 'bytes=20000-' }
        $resumed.Status | Should -Be 206
        Get-Sha256Hex ([byte[]]($cut.Body + $resumed.Body)) | Should -Be $P.digest.Substring(7)
    }

    It 'fault Corrupt flips one byte at the blob offset, also inside a Range' {
        $null = Set-ProxyFault -Registry $Srv -Kind Corrupt -Offset 4242 -Times 2
        $r = Send-Raw $BlobUrl
        $r.Body.Length | Should -Be $P.size
        [TestKitBytes]::Diff($r.Body, $Blob) | Should -Be @(4242)
        $r.Body[4242] | Should -Be ($Blob[4242] -bxor 0xFF)
        $ranged = Send-Raw $BlobUrl -Headers @{ Range = 'bytes=4000-4999' }
        $ranged.Status | Should -Be 206
        $ranged.Body[242] | Should -Be ($Blob[4242] -bxor 0xFF)
        $ranged.Body[241] | Should -Be $Blob[4241]
        Get-Sha256Hex (Send-Raw $BlobUrl).Body | Should -Be $P.digest.Substring(7)
    }

    It 'fault Redirect sends blob GETs to the CDN, which serves Range and records Authorization' {
        Reset-ProxyStats -Registry $Srv
        $null = Set-ProxyFault -Registry $Srv -Kind Redirect
        $r = Send-Raw $BlobUrl -Headers @{ Authorization = 'Bearer registry-token' }
        $r.Status | Should -Be 307
        $location = $r.Headers['Location']
        $location | Should -BeLike "$($Srv.cdnUrl)/blobs/lab/debian/$($P.digest)?*"
        $full = Send-Raw $location
        $full.Status | Should -Be 200
        Get-Sha256Hex $full.Body | Should -Be $P.digest.Substring(7)
        $part = Send-Raw $location -Headers @{ Range = 'bytes=100-'; Authorization = 'Bearer leaked' }
        $part.Status | Should -Be 206
        $part.Headers['Content-Range'] | Should -Be "bytes 100-$($P.size - 1)/$($P.size)"
        $part.Body.Length | Should -Be ($Blob.Length - 100)
        [TestKitBytes]::Same($part.Body, 0, $Blob, 100, $Blob.Length - 100) | Should -BeTrue
        $s = Get-ProxyStats -Registry $Srv
        $s.cdnRequests | Should -Be 2
        $s.cdnRequestsWithAuthorization | Should -Be 1
        $s.cdnRangeHeaders | Should -Contain 'bytes=100-'
        $s.faultsFired.redirect | Should -Be 1
    }

    It 'fault Redirect with -RejectAuthorization makes the CDN refuse Authorization like S3' {
        $null = Set-ProxyFault -Registry $Srv -Kind Redirect -RejectAuthorization
        $location = (Send-Raw $BlobUrl).Headers['Location']
        (Send-Raw $location -Headers @{ Authorization = 'Bearer leaked' }).Status | Should -Be 400
        (Send-Raw $location).Status | Should -Be 200
    }

    It 'fault Redirect with -ExpireAfter expires each CDN URL after n requests' {
        $null = Set-ProxyFault -Registry $Srv -Kind Redirect -ExpireAfter 1
        $location = (Send-Raw $BlobUrl).Headers['Location']
        (Send-Raw $location -Headers @{ Range = 'bytes=0-99' }).Status | Should -Be 206
        (Send-Raw $location -Headers @{ Range = 'bytes=100-' }).Status | Should -Be 403
        $fresh = (Send-Raw $BlobUrl).Headers['Location']
        $fresh | Should -Not -Be $location
        (Send-Raw $fresh -Headers @{ Range = 'bytes=100-' }).Status | Should -Be 206
    }

    It 'fault Throttle slows the body down to BytesPerSecond' {
        $null = Set-ProxyFault -Registry $Srv -Kind Throttle -BytesPerSecond 200000
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $r = Send-Raw $BlobUrl -Headers @{ Range = 'bytes=0-299999' }
        $clock.Stop()
        $r.Body.Length | Should -Be 300000
        [TestKitBytes]::Same($r.Body, 0, $Blob, 0, 300000) | Should -BeTrue
        $clock.Elapsed.TotalSeconds | Should -BeGreaterThan 1.0 -Because '300000 bytes at 200000 B/s cannot arrive sooner'
        (Get-ProxyStats -Registry $Srv).faultsFired.throttle | Should -BeGreaterOrEqual 1
    }

    It 'rejects unknown fault kinds' {
        { Invoke-RestMethod -Method Post -Uri "$($Srv.controlUrl)/faults" -Body '{"kind":"explode"}' -ContentType 'application/json' -TimeoutSec 10 } |
            Should -Throw '*400*'
    }
}

Describe 'Basic-auth registry' {
    BeforeAll {
        $script:Srv = Start-TestRegistry -Auth basic
    }
    AfterAll {
        Stop-TestRegistry $script:Srv
    }

    It 'answers 401 with a Basic challenge without credentials and 200 with them' {
        $anon = Send-Raw "$($Srv.registryUrl)/v2/"
        $anon.Status | Should -Be 401
        $anon.Headers['WWW-Authenticate'] | Should -BeLike 'Basic realm=*'
        $basic = 'Basic ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($Srv.username):$($Srv.password)"))
        (Send-Raw "$($Srv.registryUrl)/v2/" -Headers @{ Authorization = $basic }).Status | Should -Be 200
        $wrong = 'Basic ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($Srv.username):nope"))
        (Send-Raw "$($Srv.registryUrl)/v2/" -Headers @{ Authorization = $wrong }).Status | Should -Be 401
    }

    It 'accepts pushes with the credentials and refuses them without' {
        $img = New-TestDiskImage -Path (Join-Path $Work 'basic.img') -Size 200KB -Seed 8
        $p = Publish-TestImage -Registry $Srv -Repository lab/basic -ImagePath $img.FullName
        $basic = 'Basic ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($Srv.username):$($Srv.password)"))
        (Send-Raw "$($Srv.proxyUrl)/v2/lab/basic/manifests/latest" -Headers (@{ Authorization = $basic } + $OciAccept)).Status | Should -Be 200
        (Send-Raw "$($Srv.proxyUrl)/v2/lab/basic/blobs/$($p.digest)").Status | Should -Be 401
        { Publish-TestImage -Registry $Srv -Repository lab/basic -Tag anon -ImagePath $img.FullName -Anonymous } | Should -Throw
    }
}

Describe 'Token-auth registry' {
    BeforeAll {
        $script:Srv = Start-TestRegistry -Auth token -TokenExpiresIn 120
        $img = New-TestDiskImage -Path (Join-Path $Work 'token.img') -Size 200KB -Seed 13
        $script:Public = Publish-TestImage -Registry $Srv -Repository lab/debian -ImagePath $img.FullName
        $script:Private = Publish-TestImage -Registry $Srv -Repository $Srv.privateRepository -ImagePath $img.FullName
    }
    AfterAll {
        Stop-TestRegistry $script:Srv
    }

    It 'challenges with realm, service and scope' {
        $r = Send-Raw "$($Srv.registryUrl)/v2/lab/debian/manifests/latest" -Headers $OciAccept
        $r.Status | Should -Be 401
        $r.Headers['WWW-Authenticate'] | Should -Be "Bearer realm=`"$($Srv.tokenUrl)`",service=`"$($Srv.service)`",scope=`"repository:lab/debian:pull`""
    }

    It 'issues anonymous pull tokens for a public repository (RS256, x5c, expires_in, issued_at)' {
        $before = (Get-ProxyStats -Registry $Srv).tokenRequests
        $t = Get-Token $Srv 'repository:lab/debian:pull'
        $t.Status | Should -Be 200
        $body = [Text.Encoding]::UTF8.GetString($t.Body) | ConvertFrom-Json
        $body.token | Should -Not -BeNullOrEmpty
        $body.access_token | Should -Be $body.token
        $body.expires_in | Should -Be 120
        [DateTimeOffset]::Parse($body.issued_at) | Should -BeGreaterThan ([DateTimeOffset]::UtcNow.AddMinutes(-5))
        $parts = $body.token.Split('.')
        $header = ConvertFrom-Base64Url $parts[0] | ConvertFrom-Json
        $header.alg | Should -Be 'RS256'
        $header.x5c.Count | Should -BeGreaterThan 0
        $claims = ConvertFrom-Base64Url $parts[1] | ConvertFrom-Json
        $claims.aud | Should -Be $Srv.service
        $claims.access[0].name | Should -Be 'lab/debian'
        $claims.access[0].actions | Should -Be @('pull')
        ($claims.exp - $claims.iat) | Should -Be 120
        $m = Send-Raw "$($Srv.registryUrl)/v2/lab/debian/manifests/latest" -Headers (@{ Authorization = "Bearer $($body.token)" } + $OciAccept)
        $m.Status | Should -Be 200
        $m.Headers['Docker-Content-Digest'] | Should -Be $Public.manifestDigest
        (Get-ProxyStats -Registry $Srv).tokenRequests | Should -Be ($before + 1)
        (Get-ProxyStats -Registry $Srv).requestsByKind.token | Should -Be ($before + 1)
    }

    It 'grants no push to anonymous tokens' {
        $body = [Text.Encoding]::UTF8.GetString((Get-Token $Srv 'repository:lab/debian:pull,push').Body) | ConvertFrom-Json
        $claims = ConvertFrom-Base64Url $body.token.Split('.')[1] | ConvertFrom-Json
        $claims.access[0].actions | Should -Be @('pull')
        (Send-Raw "$($Srv.registryUrl)/v2/lab/debian/blobs/uploads/" -Method POST -Headers @{ Authorization = "Bearer $($body.token)" }).Status | Should -Be 401
    }

    It 'refuses the private repository without the right credentials' {
        (Get-Token $Srv "repository:$($Srv.privateRepository):pull").Status | Should -Be 401
        (Get-Token $Srv "repository:$($Srv.privateRepository):pull" -User $Srv.username -Password 'wrong').Status | Should -Be 401
        $ok = Get-Token $Srv "repository:$($Srv.privateRepository):pull" -User $Srv.username -Password $Srv.password
        $ok.Status | Should -Be 200
        $token = ([Text.Encoding]::UTF8.GetString($ok.Body) | ConvertFrom-Json).token
        $m = Send-Raw "$($Srv.registryUrl)/v2/$($Srv.privateRepository)/manifests/latest" -Headers (@{ Authorization = "Bearer $token" } + $OciAccept)
        $m.Status | Should -Be 200
        $m.Headers['Docker-Content-Digest'] | Should -Be $Private.manifestDigest
        # A public-repository token does not open the private one.
        $public = ([Text.Encoding]::UTF8.GetString((Get-Token $Srv 'repository:lab/debian:pull').Body) | ConvertFrom-Json).token
        (Send-Raw "$($Srv.registryUrl)/v2/$($Srv.privateRepository)/manifests/latest" -Headers (@{ Authorization = "Bearer $public" } + $OciAccept)).Status | Should -Be 401
    }

    It 'keeps body faults and redirects for requests the registry serves (not the 401 of the token dance)' {
        $url = "$($Srv.proxyUrl)/v2/lab/debian/blobs/$($Public.digest)"
        $token = ([Text.Encoding]::UTF8.GetString((Get-Token $Srv 'repository:lab/debian:pull').Body) | ConvertFrom-Json).token
        try {
            $null = Set-ProxyFault -Registry $Srv -Kind Cut -AfterBytes 1000
            (Send-Raw $url).Status | Should -Be 401
            $cut = Send-Raw $url -Headers @{ Authorization = "Bearer $token" }
            $cut.Status | Should -Be 200
            $cut.Body.Length | Should -Be 1000
            Clear-ProxyFault -Registry $Srv

            $null = Set-ProxyFault -Registry $Srv -Kind Redirect -Times 1
            (Send-Raw $url).Status | Should -Be 401
            $redirect = Send-Raw $url -Headers @{ Authorization = "Bearer $token" }
            $redirect.Status | Should -Be 307
            (Send-Raw $redirect.Headers['Location']).Status | Should -Be 200
            (Get-ProxyStats -Registry $Srv).faultsFired.redirect | Should -Be 1
        }
        finally {
            Clear-ProxyFault -Registry $Srv
        }
    }

    It 'keeps the registry challenge through the proxy' {
        $r = Send-Raw "$($Srv.proxyUrl)/v2/lab/debian/blobs/$($Public.digest)"
        $r.Status | Should -Be 401
        $r.Headers['WWW-Authenticate'] | Should -BeLike "Bearer realm=`"$($Srv.tokenUrl)`"*"
    }
}

Describe 'Token-auth registry with strict expiry' {
    BeforeAll {
        $script:Srv = Start-TestRegistry -Auth token -TokenExpiresIn 3 -StrictTokenExpiry
    }
    AfterAll {
        Stop-TestRegistry $script:Srv
    }

    It 'makes the real registry refuse a token expires_in seconds after issue, and not before' {
        # Ordering, not a wall-clock window: a loaded machine may be late for any request, so a refusal is only
        # wrong when it comes too EARLY (before expires_in, less the claims' one-second granularity), and the
        # refusal must come at all (bounded).
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $body = [Text.Encoding]::UTF8.GetString((Get-Token $Srv 'repository:lab/debian:pull').Body) | ConvertFrom-Json
        $body.expires_in | Should -Be 3
        $auth = @{ Authorization = "Bearer $($body.token)" }
        $seen = [Collections.Generic.List[object]]::new()
        $deadline = [DateTime]::UtcNow.AddSeconds(30)
        do {
            $sentAt = $clock.Elapsed.TotalSeconds
            $status = (Send-Raw "$($Srv.registryUrl)/v2/lab/debian/tags/list" -Headers $auth).Status
            $seen.Add([pscustomobject]@{ At = $sentAt; Status = $status })
            if ($status -ne 401) { Start-Sleep -Milliseconds 250 }
        } while ($status -ne 401 -and [DateTime]::UtcNow -lt $deadline)
        $status | Should -Be 401 -Because 'the registry must refuse the token once it has expired'
        $firstRefusal = ($seen | Where-Object Status -EQ 401 | Select-Object -First 1).At
        $firstRefusal | Should -BeGreaterOrEqual 1.9 -Because "no refusal before expires_in (3 s) less 1 s of granularity: $($seen | Out-String)"
    }
}

Describe 'TLS registry' {
    BeforeAll {
        $script:Srv = Start-TestRegistry -Tls
        $img = New-TestDiskImage -Path (Join-Path $Work 'tls.img') -Size 100KB -Seed 1
        $script:P = Publish-TestImage -Registry $Srv -Repository lab/tls -ImagePath $img.FullName
    }
    AfterAll {
        Stop-TestRegistry $script:Srv
    }

    It 'serves https with a certificate that the generated CA validates (registry, proxy and CDN)' {
        $Srv.caCertPath | Should -Exist
        $Srv.registryUrl | Should -BeLike 'https://127.0.0.1:*'
        $trusting = New-TlsClient -CaPath $Srv.caCertPath
        try {
            foreach ($url in "$($Srv.registryUrl)/v2/", "$($Srv.proxyUrl)/v2/lab/tls/blobs/$($P.digest)") {
                $response = $trusting.GetAsync($url).GetAwaiter().GetResult()
                [int]$response.StatusCode | Should -Be 200
                $response.Dispose()
            }
            $null = Set-ProxyFault -Registry $Srv -Kind Redirect
            try {
                $response = $trusting.GetAsync("$($Srv.proxyUrl)/v2/lab/tls/blobs/$($P.digest)").GetAwaiter().GetResult()
                [int]$response.StatusCode | Should -Be 200
                $response.RequestMessage.RequestUri.AbsoluteUri | Should -BeLike "$($Srv.cdnUrl)/*"
                $response.Dispose()
            }
            finally {
                Clear-ProxyFault -Registry $Srv
            }
        }
        finally { $trusting.Dispose() }
    }

    It 'is refused by a client that does not trust the CA' {
        $plain = New-TlsClient
        try {
            $failure = $null
            try { $null = $plain.GetAsync("$($Srv.registryUrl)/v2/").GetAwaiter().GetResult() }
            catch { $failure = $_.Exception }
            $failure | Should -Not -BeNullOrEmpty
            $failure.GetBaseException() | Should -BeOfType ([System.Security.Authentication.AuthenticationException])
        }
        finally { $plain.Dispose() }
    }
}

Describe 'Lifecycle' {
    It 'stops the registry and removes its directory on Stop-TestRegistry' {
        $r = Start-TestRegistry
        $r.registryPid | Should -BeGreaterThan 0
        Get-Process -Id $r.registryPid -ErrorAction Ignore | Should -Not -BeNullOrEmpty
        Stop-TestRegistry $r
        $proc = Get-Process -Id $r.registryPid -ErrorAction Ignore
        if ($proc) { $proc.WaitForExit(5000) | Out-Null; $proc.Refresh(); $proc.HasExited | Should -BeTrue }
        Test-Path $r.dataDir | Should -BeFalse
    }

    It 'cleans up through the watchdog when the TestKit process is killed' -Skip:(-not $IsLinux) {
        $r = Start-TestRegistry
        try {
            Stop-Process -Id $r.pid -Force
            $deadline = [DateTime]::UtcNow.AddSeconds(15)
            while ([DateTime]::UtcNow -lt $deadline -and ((Get-Process -Id $r.registryPid -ErrorAction Ignore) -or (Test-Path $r.dataDir))) {
                Start-Sleep -Milliseconds 200
            }
            Get-Process -Id $r.registryPid -ErrorAction Ignore | Should -BeNullOrEmpty
            Test-Path $r.dataDir | Should -BeFalse
        }
        finally {
            Stop-TestRegistry $r
        }
    }
}

Describe 'Isolation from the developer''s environment' {
    It 'importing TestKit.psm1 replaces WITHCACHE_SERVER, DOCKER_CONFIG, CONTAINERS_REGISTRIES_CONF and SSL_CERT_FILE; removing it restores them' {
        $psi = [Diagnostics.ProcessStartInfo]::new([Environment]::ProcessPath)
        if ((Split-Path ([Environment]::ProcessPath) -Leaf) -match '^dotnet') { $psi.ArgumentList.Add([Environment]::GetCommandLineArgs()[0]) }
        $names = "'WITHCACHE_SERVER', 'DOCKER_CONFIG', 'CONTAINERS_REGISTRIES_CONF', 'SSL_CERT_FILE'"
        $show = "foreach (`$n in $names) { `$n + '=' + [Environment]::GetEnvironmentVariable(`$n) }"
        $script = "Import-Module '$(Join-Path $PSScriptRoot 'TestKit.psm1')'; 'IN'; $show; 'DOCKERFILES=' + @(Get-ChildItem `$env:DOCKER_CONFIG -Force).Count; Remove-Module TestKit; 'OUT'; $show"
        foreach ($a in '-NoProfile', '-NonInteractive', '-Command', $script) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $psi.Environment['WITHCACHE_SERVER'] = 'http://cache.invalid'
        $psi.Environment['DOCKER_CONFIG'] = '/dev-config/docker'
        $psi.Environment['CONTAINERS_REGISTRIES_CONF'] = '/dev-config/registries.conf'
        $psi.Environment['SSL_CERT_FILE'] = '/dev-config/ca.pem'
        $p = [Diagnostics.Process]::Start($psi)
        $err = $p.StandardError.ReadToEndAsync()
        $out = $p.StandardOutput.ReadToEndAsync()
        if (-not $p.WaitForExit(60000)) { $p.Kill($true); throw 'child pwsh did not finish within 60 s' }
        $p.WaitForExit()
        $p.ExitCode | Should -Be 0 -Because $err.Result
        $lines = $out.Result -split "`r?`n"
        $in = $lines[($lines.IndexOf('IN') + 1)..($lines.IndexOf('OUT') - 1)]
        $after = $lines[($lines.IndexOf('OUT') + 1)..($lines.Count - 1)]
        $in | Should -Contain 'WITHCACHE_SERVER='
        $in | Should -Contain 'SSL_CERT_FILE='
        ($in -match '^DOCKER_CONFIG=.*orasstaging-testenv-').Count | Should -Be 1
        ($in -match '^CONTAINERS_REGISTRIES_CONF=.*orasstaging-testenv-').Count | Should -Be 1
        $in | Should -Contain 'DOCKERFILES=0'
        $after | Should -Contain 'WITHCACHE_SERVER=http://cache.invalid'
        $after | Should -Contain 'DOCKER_CONFIG=/dev-config/docker'
        $after | Should -Contain 'CONTAINERS_REGISTRIES_CONF=/dev-config/registries.conf'
        $after | Should -Contain 'SSL_CERT_FILE=/dev-config/ca.pem'
    }
}
