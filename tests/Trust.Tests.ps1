#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

# Issue 9 ("Trust"): no stamp over unverified bytes, never hang, never loop. Through the real registry and the
# TestKit's fault proxy; every wait is bounded.

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    Import-Module $ModulePath -Force

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-trust-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
    $null = New-Item -ItemType Directory -Force $Work

    # Incompressible, so the blob is larger than the client's buffers and a cut lands mid-stream.
    $script:Raw = (New-TestDiskImage -Path (Join-Path $Work 'source.img') -Size (4MB + 512) -Seed 21 -Shape Random).FullName
    $script:Registry = Start-TestRegistry -Auth anonymous
    $script:Plain = Publish-TestImage -Registry $Registry -Repository 'trust/plain' -Tag 'latest' -ImagePath $Raw -Compression none
    $script:Gzip = Publish-TestImage -Registry $Registry -Repository 'trust/gzip' -Tag 'latest' -ImagePath $Raw -Compression gzip
    $script:Layers = @{ plain = $Plain; gzip = $Gzip }

    function script:New-Target([string] $Name = 'disk.img') {
        $folder = Join-Path $Work ([guid]::NewGuid().ToString('n').Substring(0, 8))
        $null = New-Item -ItemType Directory -Force $folder
        Join-Path $folder $Name
    }
}

AfterAll {
    Stop-TestRegistry $Registry
    Remove-Item $Work -Recurse -Force -ErrorAction Ignore
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'Trust' {
    BeforeEach {
        Clear-ProxyFault -Registry $Registry
        Reset-ProxyStats -Registry $Registry
    }

    Context 'a restarted download never splices unverified bytes' {
        It 'a bad first body, cut, then a whole good body for the resume is DigestMismatch and stamps nothing (<Layer>, KeepBlob <Keep>)' -ForEach @(
            @{ Layer = 'plain'; Keep = $false }
            @{ Layer = 'gzip'; Keep = $false }
            @{ Layer = 'plain'; Keep = $true }
            @{ Layer = 'gzip'; Keep = $true }
        ) {
            $pub = $Layers[$Layer]
            # The first response has one byte flipped and is cut; the resume's Range is answered with 200.
            Set-ProxyFault -Registry $Registry -Kind Corrupt -Offset 1000 -AfterBytes 1500000 -Times 1 -PathContains $pub.digest | Out-Null
            Set-ProxyFault -Registry $Registry -Kind IgnoreRange -Times -1 -PathContains $pub.digest | Out-Null
            $target = New-Target
            $keep = Join-Path (Split-Path $target) 'blobs'
            $extra = @{}
            if ($Keep) { $extra.KeepBlob = $keep }
            $err = $null
            $result = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($pub.repository):latest" -Path $target -RetryIntervalSec 0 `
                -ErrorVariable err -ErrorAction SilentlyContinue @extra
            $fired = (Get-ProxyStats -Registry $Registry).faultsFired.ignoreRange
            $fired | Should -BeGreaterThan 0 -Because 'the resume must have been answered with 200'
            $result | Should -BeNullOrEmpty
            $err.Count | Should -Be 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'DigestMismatch,*'
            Test-Path $target | Should -BeFalse
            Test-Path "$target.digest" | Should -BeFalse
            if ($Keep) {
                @(Get-ChildItem $keep -Recurse -File -ErrorAction Ignore | Where-Object Name -NotLike '*.partial').Count | Should -Be 0
            }

            # Once the server behaves, the same run stages the genuine image.
            Clear-ProxyFault -Registry $Registry
            $null = Install-DiskImageFromOras "oras://$($Registry.proxy)/$($pub.repository):latest" -Path $target -RetryIntervalSec 0 @extra
            & qemu-img compare -q -f raw -F raw $Raw $target
            $LASTEXITCODE | Should -Be 0
        }
    }

    Context 'never loop' {
        It 'a server that ignores Range behind a cutting proxy fails with a bounded number of requests' {
            Set-ProxyFault -Registry $Registry -Kind Cut -AfterBytes 1500000 -Times 1 -PathContains $Plain.digest | Out-Null
            Set-ProxyFault -Registry $Registry -Kind IgnoreRange -AfterBytes 1500000 -Times -1 -PathContains $Plain.digest | Out-Null
            $target = New-Target
            $ref = "oras://$($Registry.proxy)/$($Plain.repository):latest"
            $module = $ModulePath
            $job = Start-ThreadJob {
                Import-Module $using:module
                $err = $null
                $null = Install-DiskImageFromOras $using:ref -Path $using:target -RetryIntervalSec 0 -MaximumRetryCount 3 -ErrorVariable err -ErrorAction SilentlyContinue
                $err | ForEach-Object FullyQualifiedErrorId
            }
            try {
                $done = Wait-Job $job -Timeout 60
                $done | Should -Not -BeNullOrEmpty -Because 'the download must give up, not loop'
                $ids = @(Receive-Job $job)
                $ids.Count | Should -Be 1
                $ids[0] | Should -Match '^(RegistryProtocolError|RegistryUnavailable),'
            }
            finally {
                Stop-Job $job -ErrorAction Ignore
                Remove-Job $job -Force -ErrorAction Ignore
                Clear-ProxyFault -Registry $Registry
            }
            $blobRequests = @((Get-ProxyStats -Registry $Registry).requests | Where-Object path -Like "*$($Plain.digest)")
            $blobRequests.Count | Should -BeLessOrEqual 12
        }
    }
}
