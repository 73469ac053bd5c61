#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# A killed Install-DiskImageFromOras resumes (issue 12): the compressed bytes received so far are kept beside the
# target (or in -KeepBlob) with a record, and the next run re-hashes and re-decodes them, then asks for the rest.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $env:ORASSTAGING_MODULE -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-resume-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work
    # Mostly incompressible, so the blob is a few MiB and the throttle makes it last several seconds.
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size 14MB -Seed 31 -DataFraction 0.9).FullName
    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:Pub = Publish-TestImage -Registry $Registry -Repository 'lab/resume' -Tag 'v1' -ImagePath $Raw
    $script:Ref = "oras://$($Registry.proxy)/lab/resume:v1"

    function script:New-Target {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory -Force $folder
        Join-Path $folder 'disk.qcow2'
    }

    # Kills a throttled install once its kept prefix's record is past 55 % of the blob; returns that offset.
    function script:Stop-InstallMidStream([string] $Target, [string] $Record, [string] $Extra = '') {
        Set-ProxyFault -Registry $Registry -Kind Throttle -BytesPerSecond 800KB -Times -1 -PathContains $Pub.digest | Out-Null
        $child = Start-ChildPwsh -Command "Import-Module '$env:ORASSTAGING_MODULE'; Install-DiskImageFromOras '$Ref' -Path '$Target' $Extra"
        $offset = 0
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(90)
            while ($offset -lt 0.55 * $Pub.size -and [DateTime]::UtcNow -lt $deadline -and -not $child.HasExited) {
                Start-Sleep -Milliseconds 100
                try { $offset = [long](Get-Content -LiteralPath $Record -Raw -ErrorAction Stop | ConvertFrom-Json).offset } catch { $offset = 0 }
            }
            $child.HasExited | Should -BeFalse -Because 'the throttled download is still under way'
        }
        finally {
            if (-not $child.HasExited) { $child.Kill($true) }   # SIGKILL: nothing of the child's cleanup runs
            $child.WaitForExit()
            Clear-ProxyFault -Registry $Registry
        }
        $offset
    }

    function script:Get-FirstBlobRange($Stats) {
        @($Stats.requests | Where-Object { $_.kind -eq 'blob' -and $_.method -eq 'GET' -and $_.path -like "*$($Pub.digest)" })[0].range
    }
}

AfterAll {
    Stop-TestRegistry $Registry
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'a killed install resumes' {
    It 'resumes from the kept bytes <Where>: the first blob GET starts past half the blob and the image is identical' -ForEach @(
        @{ Where = 'beside the target'; KeepBlob = $false }
        @{ Where = 'in the -KeepBlob folder'; KeepBlob = $true }
    ) {
        $target = New-Target
        $extra = ''
        $prefix = "$target.blob.partial"
        if ($KeepBlob) {
            $keep = Join-Path (Split-Path $target) 'blobs'
            $extra = "-KeepBlob '$keep'"
            $prefix = Join-Path $keep "sha256/$($Pub.digest.Substring(7)).partial"
        }
        $killedAt = Stop-InstallMidStream $target "$prefix.json" $extra
        $killedAt | Should -BeGreaterThan ($Pub.size / 2)
        Test-Path $target | Should -BeFalse
        Test-Path $prefix | Should -BeTrue
        # The record names the image partial the killed run was writing; the next run writes into it.
        $imagePartial = Join-Path (Split-Path $target) (Get-Content -LiteralPath "$prefix.json" -Raw | ConvertFrom-Json).image
        (Get-Item -LiteralPath $imagePartial).Length | Should -BeGreaterThan 0

        Reset-ProxyStats -Registry $Registry
        $splat = @{ Path = $target }
        if ($KeepBlob) { $splat.KeepBlob = $keep }
        $verbose = Install-DiskImageFromOras $Ref @splat -ErrorAction Stop -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message
        ($verbose -match '^Resuming') | Should -Not -BeNullOrEmpty
        ($verbose -like "Reusing '$imagePartial', the image an unfinished run left*") | Should -Not -BeNullOrEmpty
        ($verbose -match '^Reused the partial image an unfinished run left: [1-9][\d.]* [KMG]iB were already there') | Should -Not -BeNullOrEmpty
        Test-Path -LiteralPath $imagePartial | Should -BeFalse -Because 'the reused partial became the image'
        @(Get-ChildItem -LiteralPath (Split-Path $target) -Filter 'disk.qcow2.*.partial') | Should -BeNullOrEmpty
        $range = Get-FirstBlobRange (Get-ProxyStats -Registry $Registry)
        $range | Should -Match '^bytes=\d+-'
        [long]($range -replace '^bytes=(\d+)-.*$', '$1') | Should -BeGreaterThan ($Pub.size / 2)
        & qemu-img compare -q -f raw -F qcow2 $Raw $target
        $LASTEXITCODE | Should -Be 0
        Test-Path $prefix | Should -BeFalse
        Test-Path "$prefix.json" | Should -BeFalse
        if ($KeepBlob) {
            (Get-FileHash (Join-Path $keep "sha256/$($Pub.digest.Substring(7))") -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $Pub.digest.Substring(7)
        }
    }

    It 'a run that fails mid-download keeps its image partial with the kept bytes, and the next run writes into it' {
        $target = New-Target
        $prefix = "$target.blob.partial"
        Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes ([long]($Pub.size * 0.6)) -Times -1 -PathContains $Pub.digest | Out-Null
        try {
            $failed = $null
            Install-DiskImageFromOras $Ref -Path $target -MaximumRetryCount 0 -RetryIntervalSec 0 -ErrorAction SilentlyContinue -ErrorVariable failed
            $failed | Should -Not -BeNullOrEmpty -Because 'every response is cut and no retry is allowed'
        }
        finally {
            Clear-ProxyFault -Registry $Registry
        }
        Test-Path $target | Should -BeFalse
        $record = Get-Content -LiteralPath "$prefix.json" -Raw | ConvertFrom-Json
        $record.offset | Should -BeGreaterThan 0
        $imagePartial = Join-Path (Split-Path $target) $record.image
        (Get-Item -LiteralPath $imagePartial).Length | Should -BeGreaterThan 0 -Because 'the image written so far stays with the kept download'

        $verbose = Install-DiskImageFromOras $Ref -Path $target -ErrorAction Stop -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message
        ($verbose -like "Reusing '$imagePartial', the image an unfinished run left*") | Should -Not -BeNullOrEmpty
        & qemu-img compare -q -f raw -F qcow2 $Raw $target
        $LASTEXITCODE | Should -Be 0
        @(Get-ChildItem -LiteralPath (Split-Path $target) -Filter '*.partial') | Should -BeNullOrEmpty
    }

    It 'sweeps a kept prefix of another digest under the lock and downloads from byte 0' {
        $target = New-Target
        [IO.File]::WriteAllBytes("$target.blob.partial", [byte[]]::new(100000))
        @{ digest = 'sha256:' + ('ab' * 32); size = $Pub.size; registry = 'x'; repository = 'y'; offset = 100000 } | ConvertTo-Json -Compress |
            Set-Content -LiteralPath "$target.blob.partial.json" -NoNewline
        Reset-ProxyStats -Registry $Registry
        $verbose = Install-DiskImageFromOras $Ref -Path $target -ErrorAction Stop -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message
        ($verbose -match 'Removing the kept download') | Should -Not -BeNullOrEmpty
        Get-FirstBlobRange (Get-ProxyStats -Registry $Registry) | Should -BeNullOrEmpty
        & qemu-img compare -q -f raw -F qcow2 $Raw $target
        $LASTEXITCODE | Should -Be 0
        Test-Path "$target.blob.partial" | Should -BeFalse
    }
}
