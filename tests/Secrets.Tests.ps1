#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# No secret in any text: with the RIGHT credentials (from -Credential and from a docker config.json), every stream of
# Resolve-OrasImage and Save-OrasBlob (output, error, warning, verbose, debug, information and progress) is searched
# for the password, the Basic value, any bearer token and the CDN's signed query string.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("secrets-tests-" + [guid]::NewGuid().ToString('n'))
    $null = New-Item -ItemType Directory -Path $Work
    $script:Image = Join-Path $Work 'debian.raw'
    New-TestDiskImage -Path $Image -Size 2MB -Seed 11
    $script:OldDockerConfig = $env:DOCKER_CONFIG

    # Runs the script in its own runspace so the progress stream can be read too; returns every stream as text.
    function script:Get-AllStreamText([scriptblock] $Script, [object[]] $Arguments) {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript('param($Module) Import-Module $Module; $ProgressPreference = "Continue"').AddArgument($env:ORASSTAGING_MODULE)
            $null = $ps.AddStatement().AddScript($Script)
            foreach ($a in $Arguments) { $null = $ps.AddArgument($a) }
            $async = $ps.BeginInvoke()
            if (-not $async.AsyncWaitHandle.WaitOne(120000)) {
                $ps.Stop()
                throw 'The command did not finish within 120 s.'
            }
            $output = $ps.EndInvoke($async)
            $parts = [Collections.Generic.List[string]]::new()
            $parts.Add(($output | Format-List * -Force | Out-String -Width 4096))
            foreach ($e in $ps.Streams.Error) {
                $parts.Add(($e | Format-List * -Force | Out-String -Width 4096))
                $parts.Add($e.Exception.ToString())
                if ($e.ErrorDetails) { $parts.Add($e.ErrorDetails.Message + "`n" + $e.ErrorDetails.RecommendedAction) }
            }
            foreach ($w in $ps.Streams.Warning) { $parts.Add($w.Message) }
            foreach ($v in $ps.Streams.Verbose) { $parts.Add($v.Message) }
            foreach ($d in $ps.Streams.Debug) { $parts.Add($d.Message) }
            foreach ($i in $ps.Streams.Information) { $parts.Add([string]$i.MessageData) }
            foreach ($p in $ps.Streams.Progress) { $parts.Add("$($p.Activity) | $($p.StatusDescription) | $($p.CurrentOperation)") }
            [pscustomobject]@{
                Text = $parts -join "`n"
                Errors = @($ps.Streams.Error)
                Verbose = @($ps.Streams.Verbose).Count
                Progress = @($ps.Streams.Progress).Count
            }
        }
        finally { $ps.Dispose() }
    }

    function script:Assert-NoSecret([string] $Text, $Registry, [string[]] $Extra) {
        $basic = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($Registry.username):$($Registry.password)"))
        $Text | Should -Not -BeNullOrEmpty
        $Text.Contains($Registry.password) | Should -BeFalse -Because 'the password must never be written'
        $Text.Contains($basic) | Should -BeFalse -Because 'the Basic value must never be written'
        $Text | Should -Not -Match 'eyJ[A-Za-z0-9_-]{8,}' -Because 'no JWT (bearer token) must be written'
        $Text | Should -Not -Match '(?i)\bBearer\s+(?!realm)[A-Za-z0-9._~+/-]{8,}'
        $Text | Should -Not -Match '(?i)\bBasic\s+[A-Za-z0-9+/]{8,}=*'
        $Text | Should -Not -Match 'X-Amz-(Signature|Expires)' -Because 'the signed CDN query string is a credential'
        foreach ($secret in $Extra) {
            if ($secret) { $Text.Contains($secret) | Should -BeFalse }
        }
    }
}

AfterAll {
    $env:DOCKER_CONFIG = $OldDockerConfig
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'No secret in any stream with <Mode> auth, credentials from <Source>' -ForEach @(
    @{ Mode = 'token'; Tls = $true; Source = '-Credential' }
    @{ Mode = 'token'; Tls = $true; Source = 'config.json' }
    @{ Mode = 'basic'; Tls = $false; Source = '-Credential' }
    @{ Mode = 'basic'; Tls = $false; Source = 'config.json' }
) {
    BeforeAll {
        $script:A = Start-TestRegistry -Auth $Mode -Tls:$Tls
        # The private repository needs the credentials, so a run that succeeds has certainly used them.
        $script:AP = Publish-TestImage -Registry $A -Repository $A.privateRepository -ImagePath $Image
        $script:Ref = "oras://$($A.proxy)/$($A.privateRepository):latest"
        $script:Common = @{ SkipCertificateCheck = [bool]$Tls; CacheServer = '' }
        if (-not $Tls) { $Common.PlainHttp = $true }
        $script:Config = Join-Path $Work "docker-$Mode-$Source".Replace('.', '-')
        $null = New-Item -ItemType Directory -Path $Config -Force
        if ($Source -eq 'config.json') {
            $auth = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($A.username):$($A.password)"))
            @{ auths = @{ $A.proxy = @{ auth = $auth } } } | ConvertTo-Json -Depth 5 | Set-Content (Join-Path $Config 'config.json')
            $Common.Credential = $null
        }
        else {
            $Common.Credential = [pscredential]::new($A.username, (ConvertTo-SecureString $A.password -AsPlainText -Force))
        }
        # A token the token server really issues for this scope, to look for verbatim as well.
        $script:IssuedToken = $null
        if ($Mode -eq 'token') {
            $pair = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($A.username):$($A.password)"))
            $uri = "$($A.tokenUrl)?service=$([uri]::EscapeDataString($A.service))&scope=$([uri]::EscapeDataString("repository:$($A.privateRepository):pull"))"
            $answer = Invoke-RestMethod -Uri $uri -Headers @{ Authorization = "Basic $pair" } -SkipCertificateCheck -TimeoutSec 20
            $script:IssuedToken = $answer.token
        }
    }
    AfterAll { Stop-TestRegistry $A }
    AfterEach { Clear-ProxyFault -Registry $A }

    It 'the check itself sees a leaked password, Basic value, token or signed URL' {
        $basic = [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("$($A.username):$($A.password)"))
        $leaks = @("pw is $($A.password).", "Authorization: Basic $basic", 'Authorization: Bearer abcdefghijklmnop',
            'GET /blobs/x?X-Amz-Expires=300&X-Amz-Signature=00ff')
        if ($Mode -eq 'token') {
            # The token server's tokens are JWTs, which the eyJ rule is there to catch.
            $IssuedToken | Should -Match '^eyJ'
            $leaks += "token $IssuedToken"
        }
        foreach ($leak in $leaks) {
            { Assert-NoSecret -Text $leak -Registry $A } | Should -Throw
        }
    }

    It 'Resolve-OrasImage -Verbose -Debug writes none' {
        $r = Get-AllStreamText -Script {
            param($Ref, $Common, $Config)
            $env:DOCKER_CONFIG = $Config
            $Common = $Common.Clone()
            if ($null -eq $Common.Credential) { $Common.Remove('Credential') }
            $Common.Remove('CacheServer')
            # No *>&1: each stream stays in its own collection, so Errors below is the real error stream.
            Resolve-OrasImage $Ref @Common -Verbose -Debug
        } -Arguments $Ref, $Common, $Config
        $r.Errors | Should -BeNullOrEmpty
        $r.Verbose | Should -BeGreaterThan 0 -Because 'the Verbose stream must really be in the text searched'
        $r.Text | Should -Match ([regex]::Escape($AP.digest))
        Assert-NoSecret -Text $r.Text -Registry $A -Extra $IssuedToken
    }

    It 'Save-OrasBlob -Verbose -Debug through a 307 to the signed CDN URL writes none' {
        Reset-ProxyStats -Registry $A
        Set-ProxyFault -Registry $A -Kind Redirect -RejectAuthorization | Out-Null
        $dest = Join-Path $Work "save-$Mode-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory -Path $dest
        $r = Get-AllStreamText -Script {
            param($Ref, $Common, $Config, $Dest)
            $env:DOCKER_CONFIG = $Config
            $Common = $Common.Clone()
            if ($null -eq $Common.Credential) { $Common.Remove('Credential') }
            Save-OrasBlob $Ref $Dest @Common -Verbose -Debug
        } -Arguments $Ref, $Common, $Config, $dest
        $r.Errors | Should -BeNullOrEmpty
        $r.Text | Should -Match 'redirected to 127\.0\.0\.1' -Because 'the Verbose stream must really be in the text searched'
        $saved = Join-Path $dest $AP.title
        ('sha256:' + (Get-FileHash -LiteralPath $saved -Algorithm SHA256).Hash.ToLowerInvariant()) | Should -Be $AP.digest
        $stats = Get-ProxyStats -Registry $A
        $stats.cdnRequests | Should -BeGreaterThan 0 -Because 'the download must really have gone through the signed URL'
        # The CDN logs the full request target, so the signature the client really used is known here.
        $signatures = @($stats.cdnLog | ForEach-Object { if ("$($_.target)" -match 'X-Amz-Signature=([0-9a-f]+)') { $Matches[1] } })
        $signatures.Count | Should -BeGreaterThan 0 -Because 'the CDN saw signed URLs, so the list searched for must not be empty'
        Assert-NoSecret -Text $r.Text -Registry $A -Extra (@($IssuedToken) + $signatures)
    }
}
