#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Azure Pipelines logging commands: with TF_BUILD set, long work also prints ##vso[task.setprogress] lines and each
# failure a ##vso[task.logissue type=error] line. The switch is read once per process, so each case runs in a child pwsh.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "oras-vso-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $null = New-Item -ItemType Directory $Work
    $raw = Join-Path $Work 'disk.img'
    New-TestDiskImage -Path $raw -Size (24MB + 100) -Seed 7
    $script:Gz = Join-Path $Work 'disk.img.gz'
    $in = [IO.File]::OpenRead($raw)
    $out = [IO.File]::Create($Gz)
    $gzip = [IO.Compression.GZipStream]::new($out, [IO.Compression.CompressionLevel]::Fastest)
    $in.CopyTo($gzip); $gzip.Dispose(); $in.Dispose()
    $script:NotCompressed = Join-Path $Work 'plain.bin.gz'
    [IO.File]::WriteAllBytes($NotCompressed, [byte[]](1..200))

    function script:Invoke-Child([string] $Script, [hashtable] $Environment) {
        Invoke-ChildPwsh -Command $Script -Environment $Environment -Unset TF_BUILD
    }

    $script:Run = @"
Import-Module '$($env:ORASSTAGING_MODULE)'
`$file = Expand-DiskImage -LiteralPath '$Gz' -DestinationPath '$Work/out-`$PID.img' -Force
'EXPANDED=' + `$file.Length
Expand-DiskImage -LiteralPath '$NotCompressed' -DestinationPath '$Work/bad-`$PID.bin' -ErrorAction SilentlyContinue -ErrorVariable failure
'ERRORID=' + `$failure[0].FullyQualifiedErrorId
'DONE'
"@
    $script:RawSize = 24MB + 100

    # The child must have run the script to its end: a crash (or a module that fails to load) prints no ##vso[
    # line either, and would otherwise pass the "prints none" case.
    function script:Assert-RanToEnd($Result) {
        $Result.ExitCode | Should -Be 0 -Because "the child pwsh must not fail: $($Result.Err)"
        $Result.Out | Should -Match "(?m)^EXPANDED=$RawSize\s*$"
        $Result.Out | Should -Match '(?m)^ERRORID=\w+,OrasStaging\.'
        $Result.Out | Should -Match '(?m)^DONE\s*$'
    }
}

AfterAll {
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
}

Describe 'Azure Pipelines logging commands' {
    It 'prints setprogress and one logissue per failure when TF_BUILD is set' {
        $r = Invoke-Child $Run @{ TF_BUILD = 'True' }
        Assert-RanToEnd $r
        $r.Out | Should -Match '##vso\[task\.setprogress value=\d+;\]'
        @([regex]::Matches($r.Out, '##vso\[task\.logissue type=error\]')).Count | Should -Be 1
    }

    It 'prints none of them outside Azure Pipelines' {
        $r = Invoke-Child $Run @{}
        Assert-RanToEnd $r
        $r.Out | Should -Not -Match '##vso\['
    }
}
