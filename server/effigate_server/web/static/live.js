// Live screens: countdowns tick every second; the page refreshes its live parts on news.
