#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Issue 9: about_OrasStaging says what OrasStaging trusts, for every input, with what is checked and what is refused.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    $script:About = Get-Help about_OrasStaging | Out-String
    # The section runs from its heading to the next all-capitals heading.
    $script:Section = if ($About -match '(?ms)^WHAT ORASSTAGING TRUSTS[ \t]*\r?$(.*?)^[A-Z][A-Z ]+\r?$') { $Matches[1] } else { '' }
}

AfterAll {
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'about_OrasStaging: What OrasStaging trusts' {
    It 'has the section' {
        $Section | Should -Not -BeNullOrEmpty
    }

    It 'names <_> with what is checked and what is refused' -ForEach @('Registry', 'Redirect host', 'Token realm', 'Artifact metadata', 'Config files', 'Environment') {
        $entry = if ($Section -match ('(?ms)^ {4}' + [regex]::Escape($_) + '[ \t]*\r?$(.*?)(?=^ {4}\S|\z)')) { $Matches[1] } else { '' }
        $entry | Should -Match 'Checked:' -Because "the entry for '$_' must exist and say what is checked"
    }

    It 'says what is refused for the network and artifact inputs' {
        foreach ($word in 'BlobUri', 'https to http', 'another host', 'UnsupportedFormat', 'backing file', 'PATH', 'anonymously', '##vso', 'quoted') {
            $Section | Should -Match ([regex]::Escape($word))
        }
    }

    It 'says how the registry is reached and what bounds a pull' {
        foreach ($word in 'stall timeout', 'does not speak TLS', 'certificate', 'does not resolve', 'manifest requests only', 'declares', 'InsufficientSpace') {
            # Words may be wrapped onto the next line.
            $Section | Should -Match ([regex]::Escape($word) -replace '\\ ', '\s+')
        }
    }
}
