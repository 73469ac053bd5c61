#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# GitHub Actions output: with GITHUB_ACTIONS=true each failure is an ::error:: line, each image's staging a ::group::,
# and the staged images a table appended to $GITHUB_STEP_SUMMARY; whatever a registry, a config or a path supplied is
# escaped so it cannot start a workflow command. The switch is read once per process, so each case runs in a child pwsh.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "oras-gha-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $null = New-Item -ItemType Directory $Work
    $raw = (New-TestDiskImage -Path (Join-Path $Work 'disk.img') -Size 3MB -Seed 9).FullName
    $script:R = Start-TestRegistry
    $script:Pub = Publish-TestImage -Registry $R -Repository lab/gha -ImagePath $raw

    # A registry whose every answer but /v2/ is a 404 with a hostile error message: a line break and a workflow
    # command of its own, and an already-escaped one (%0A) that the runner would decode if '%' were not escaped.
    for ($try = 0; ; $try++) {
        $script:Listener = [System.Net.HttpListener]::new()
        $port = Get-Random -Minimum 20000 -Maximum 60000
        $Listener.Prefixes.Add("http://127.0.0.1:$port/")
        try { $Listener.Start(); break } catch { if ($try -ge 20) { throw } }
    }
    $script:Hostile = "127.0.0.1:$port"
    $script:ListenerJob = Start-ThreadJob -ArgumentList $Listener -ScriptBlock {
        param($Listener)
        while ($Listener.IsListening) {
            try { $ctx = $Listener.GetContext() } catch { break }
            if ($ctx.Request.Url.AbsolutePath -eq '/v2/') { $body = '{}'; $ctx.Response.StatusCode = 200 }
            else {
                $body = '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"nope\n::warning::injected-by-registry %0A::warning::decoded"}]}'
                $ctx.Response.StatusCode = 404
            }
            $bytes = [Text.Encoding]::UTF8.GetBytes($body)
            $ctx.Response.ContentType = 'application/json'
            $ctx.Response.ContentLength64 = $bytes.Length
            $ctx.Response.OutputStream.Write($bytes, 0, $bytes.Length)
            $ctx.Response.Close()
        }
    }

    # The name comes from the caller (or a cijoe config): a table cell break, HTML and a workflow command in it.
    $script:Script = Join-Path $Work 'run.ps1'
    Set-Content -LiteralPath $Script -Value @"
Import-Module '$($env:ORASSTAGING_MODULE)'
`$image = Install-DiskImageFromOras 'oras://$($R.proxy)/lab/gha:latest' -Path (Join-Path '$Work' "out-`$PID/disk.qcow2") -Name "web|<b>&`n::warning::from-name"
'DIGEST=' + `$image.Digest
Install-DiskImageFromOras 'oras://$Hostile/lab/missing:v1' -Path (Join-Path '$Work' "bad-`$PID/disk.qcow2") -RetryIntervalSec 0 -ErrorAction SilentlyContinue -ErrorVariable failure
'ERRORID=' + `$failure[0].FullyQualifiedErrorId
'DONE'
"@

    function script:Invoke-Child([hashtable] $Environment) {
        Invoke-ChildPwsh -Command "& '$Script'" -Environment $Environment -Unset GITHUB_ACTIONS, GITHUB_STEP_SUMMARY, TF_BUILD
    }

    function script:Assert-RanToEnd($Result) {
        $Result.ExitCode | Should -Be 0 -Because "the child pwsh must not fail: $($Result.Err)"
        $Result.Out | Should -Match "(?m)^DIGEST=$([regex]::Escape($Pub.digest))\s*$"
        $Result.Out | Should -Match '(?m)^ERRORID=ManifestNotFound,OrasStaging\.'
        $Result.Out | Should -Match '(?m)^DONE\s*$'
    }
}

AfterAll {
    Stop-TestRegistry $R
    $Listener.Stop(); $Listener.Close()
    $ListenerJob | Wait-Job -Timeout 10 | Out-Null
    $ListenerJob | Remove-Job -Force
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
}

Describe 'GitHub Actions output' {
    It 'prints a group per image, one escaped ::error:: per failure, and appends the staged images to the job summary' {
        $summary = Join-Path $Work 'summary.md'
        Set-Content -LiteralPath $summary -Value "# Earlier step`n" -NoNewline
        $run = Invoke-Child @{ GITHUB_ACTIONS = 'true'; GITHUB_STEP_SUMMARY = $summary }
        Assert-RanToEnd $run
        $lines = $run.Out -split "`r?`n"

        @($lines | Where-Object { $_ -like "::group::Install oras://$($R.proxy)/lab/gha:latest to *" }).Count | Should -Be 1
        @($lines | Where-Object { $_ -eq '::endgroup::' }).Count | Should -Be 2
        $errors = @($lines | Where-Object { $_ -like '::error*' })
        $errors.Count | Should -Be 1
        $errors[0] | Should -BeLike '::error title=ManifestNotFound::*'
        $errors[0] | Should -Match ([regex]::Escape('%250A::warning::decoded'))
        # No workflow command but ours: nothing the registry or the name supplied starts a line.
        @($lines | Where-Object { $_ -match '^::(?!group::|endgroup::|error title=ManifestNotFound)' }).Count | Should -Be 0

        $text = Get-Content -Raw -LiteralPath $summary
        $text | Should -BeLike '# Earlier step*' -Because 'the summary is appended to, not replaced'
        $text | Should -Match '### Staged disk images'
        $text | Should -Match '\| Name \| Path \| Format \| Digest \| Reference \| Result \|'
        $row = @($text -split "`n" | Where-Object { $_ -like "*$($Pub.digest)*" })
        $row.Count | Should -Be 1
        $row[0] | Should -Match ([regex]::Escape('web\|&lt;b&gt;&amp; ::warning::from-name'))
        $row[0] | Should -Match '\| qcow2 \|'
        $row[0] | Should -Match '\| staged \|$'
    }

    It 'prints none of it outside GitHub Actions' {
        $summary = Join-Path $Work 'no-summary.md'
        $run = Invoke-Child @{ GITHUB_STEP_SUMMARY = $summary }
        Assert-RanToEnd $run
        $run.Out | Should -Not -Match '(?m)^::'
        Test-Path -LiteralPath $summary | Should -BeFalse
    }
}
